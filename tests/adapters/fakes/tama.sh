#!/bin/sh
# Stands in for the `tama` CLI inside a run: one HTTP request to $TAMA_API_URL, as the real one
# makes GraphQL calls to the server.
exec python3 -c '
import os, urllib.request
with urllib.request.urlopen(os.environ["TAMA_API_URL"] + "/v1/models", timeout=5) as answer:
    print("tama: server answered", answer.status)
'
