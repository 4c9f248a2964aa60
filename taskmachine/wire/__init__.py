"""The contract between server and daemon: AMQP topology names and the messages on the wire.

Shared by both sides, so it imports nothing from taskmachine except settings.
"""
