"""The commands an agent runs inside a Task Machine run: `tama tasks|memory|questions|…`.

They authenticate with the run's token (TASKMACHINE_RUN_TOKEN) against TASKMACHINE_API_URL.
"""
