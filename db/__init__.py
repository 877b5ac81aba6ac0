"""Storage for trendmap: the trend archive table, engines and repositories.

`db` never reads settings and never imports `graph`: callers hand it a URL or an engine.
"""
