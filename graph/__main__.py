"""``python -m graph`` runs the trendmap command."""

from graph.cli import main

raise SystemExit(main())
