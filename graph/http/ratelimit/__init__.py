"""Rate limits: what a request costs (cost) and the budgets it spends from (limiter).

Each client has two budgets a minute, reads (policy "default") and writes (policy "writes"),
counted in the store every worker shares; graph.http.middleware.ratelimit applies them.
"""
