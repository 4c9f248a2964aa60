"""Queries and mutations by domain; taskmachine.schema.root merges them."""
