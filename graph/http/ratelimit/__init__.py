"""Rate limits: what a request costs (cost) and the budgets it spends from (limiter).

Each client has two budgets a minute, reads (policy "default") and writes (policy "writes"),
shared by every worker through the store: each worker reserves units in chunks and spends them
in process (reservation), or counts exactly in process on the in-process store (local), keeping
a bounded table of budgets (table). graph.http.middleware.ratelimit applies them.
"""
