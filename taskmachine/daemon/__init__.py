"""The machine side of Task Machine: config file, runtime detection, and (later) the daemon loops.

Like `taskmachine.cli`, this package never imports the server side (models, loop, dispatcher,
schema, resolvers, server): it runs on users' machines without the server extras.
"""
