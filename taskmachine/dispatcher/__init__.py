"""Server-side broker work: machine broker users, outbox relay, ingest, sweepers, live fan-out."""
