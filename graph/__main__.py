"""``python -m graph`` runs the trendmap command."""

from graph.cli.main import main

raise SystemExit(main())
