"""Exit codes of `tama` commands, one per ending a caller (or a startup service) must tell apart.

0   done (daemon drained after Ctrl-C / SIGTERM; setup approved; status ok)
1   failed (the message says why)
2   usage error (typer/click's own code for a bad option)
3   setup: the approval was denied
4   setup: the approval expired before anyone decided
5   setup/status: the server could not be reached
75  daemon: a newer release is installed; restart me (EX_TEMPFAIL; the startup service does)
77  daemon: the broker or API refused this machine's credentials; run `tama setup` again
    (EX_NOPERM; the startup service does not restart on it)
78  daemon: the config file is missing or unusable (EX_CONFIG; not restarted either)
"""

from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
SETUP_DENIED = 3
SETUP_EXPIRED = 4
UNREACHABLE = 5
RESTART_FOR_UPDATE = 75
CREDENTIALS_REFUSED = 77
CONFIG_INVALID = 78

# Endings a startup service must not restart: they need a person first.
NO_RESTART = (CREDENTIALS_REFUSED, CONFIG_INVALID)
