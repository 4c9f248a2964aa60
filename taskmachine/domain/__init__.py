"""Domain operations: each validates, checks access, changes rows and flushes.

The caller (a GraphQL request, a sweeper) owns the transaction and commits; live events
collected here are published only after that commit (see taskmachine.live).
"""
