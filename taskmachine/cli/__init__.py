"""The `tama` command line. It runs without the server extras: it imports only wire/, daemon/,
settings and itself, never the server side (models, loop, dispatcher, schema, resolvers, server).
"""
