"""Reading the text a command sends: an argument, a file, or stdin ('-').

Read before the event loop starts, so a slow pipe blocks nothing else.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from taskmachine.cli.agent.client import bad_input


def _stdin() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        raise bad_input("'-' reads the text from stdin, but nothing is piped in")
    return sys.stdin.read()


def _file(name: str) -> str:
    try:
        return Path(name).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise bad_input(f"{name} is not UTF-8 text") from None
    except OSError as exc:
        raise bad_input(f"cannot read {name}: {exc.strerror or exc}") from None


# A lone word like `--jsno` is a mistyped option, not text.
_LOOKS_LIKE_OPTION = re.compile(r"--?[A-Za-z][\w-]*")


def body_text(text: str | None, file: str | None, what: str) -> str:
    """The text from exactly one source; empty text is refused."""
    if text is not None and file is not None:
        raise bad_input(f"give the {what} either as an argument or with --file, not both")
    if file is not None:
        value = _stdin() if file == "-" else _file(file)
    elif text == "-":
        value = _stdin()
    elif text is None:
        raise bad_input(f"give the {what} as an argument, with --file FILE, or '-' to read stdin")
    elif _LOOKS_LIKE_OPTION.fullmatch(text):
        raise bad_input(f"no such option: {text} (to send it as text, pipe it in with '-')")
    else:
        value = text
    if not value.strip():
        raise bad_input(f"the {what} is empty")
    return value
