"""The published schema.graphql is exactly what the code serves."""

from __future__ import annotations

from pathlib import Path

from taskmachine.schema.sdl import sdl

ROOT = Path(__file__).resolve().parents[2]


def test_schema_graphql_matches_code() -> None:
    published = (ROOT / "schema.graphql").read_text()
    assert published == sdl(), "schema.graphql is stale: run scripts/export-schema"
