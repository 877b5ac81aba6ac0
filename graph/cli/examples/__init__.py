"""The example documents in ``docs/examples/``: real requests and the service's real answers.

``trendmap examples`` runs the service on demo data and writes one Markdown file per entry of
``catalogue.EXAMPLES`` (docs/architecture.md, "Examples", says how the output stays the same
from run to run). tests/cli/test_examples.py regenerates them and compares.
"""
