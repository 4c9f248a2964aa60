"""Print the schema's SDL: `python -m taskmachine.schema.sdl > schema.graphql`."""

from __future__ import annotations

from taskmachine.schema.root import build_schema
from taskmachine.settings import Settings


def sdl() -> str:
    return build_schema(Settings()).as_str() + "\n"


if __name__ == "__main__":
    print(sdl(), end="")
