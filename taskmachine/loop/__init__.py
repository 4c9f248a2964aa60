"""The agent loop: a trigger → the acting agent → its runtime → the compiled prompt → a run.

Every trigger (assignment, comment, reaction, chat message, and later schedules, rechecks, lead
heartbeats, workflow nodes) goes through `taskmachine.loop.start.start_run`, so each run records
its input and the prompt it received, and works in the folder of the thing it is about.
This package never imports taskmachine.schema.
"""
