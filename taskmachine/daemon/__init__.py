"""The machine side of Task Machine: what `tama` runs on a user's computer.

    config.py          ~/.taskmachine/config.json (mode 600; legacy path read)
    detect.py          which coding CLIs exist here (cached; cheap when nothing changed)
    api.py             GraphQL client of the server; credentials.py: access/refresh tokens
    approval.py        the browser approval behind `tama setup`
    status.py          the checks behind `tama status`
    daemon.py          `tama daemon`: wires the loops below and drains on SIGTERM / Ctrl-C
      broker.py        the connection as machine-<id>, reconnecting with backoff
      heartbeat.py     a heartbeat every interval on its own task
      detection_loop.py  detection refreshed every interval on its own task
      control.py       the control queue (update, cancel)
      executor/        runs (jobs queue, CLI processes, run events; its own package)
    updater.py         pip-install a release and verify it (exit 75 restarts the daemon)
    startup.py         systemd user unit / launchd agent
    exit_codes.py      every exit code of the tama commands

Like `taskmachine.cli`, this package never imports the server side (models, loop, dispatcher,
schema, resolvers, server): it runs on users' machines without the server extras.
"""
