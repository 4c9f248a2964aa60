"""The names both sides derive from a machine id, and what they refuse."""

from __future__ import annotations

import pytest

from taskmachine.wire.topology import (
    EventRoutingKey,
    control_queue,
    heartbeat_routing_key,
    jobs_queue,
    machine_id_from_username,
    machine_routing_key,
    machine_username,
    parse_event_routing_key,
    queue_arguments,
    run_event_routing_key,
)

# Fixed, so test ids are the same in every process (pytest-xdist compares them).
MID = "3f2b8c1e-9d4a-4e6b-8a7c-0f1e2d3c4b5a"


def test_names_of_a_machine() -> None:
    assert machine_username(MID) == f"machine-{MID}"
    assert machine_routing_key(MID) == f"machine.{MID}"
    assert jobs_queue(MID) == f"tama.machine.{MID}.jobs"
    assert control_queue(MID) == f"tama.machine.{MID}.control"
    assert heartbeat_routing_key(MID) == f"machine.{MID}.heartbeat"
    assert run_event_routing_key(MID, "r-1", "output") == f"machine.{MID}.run.r-1.output"


@pytest.mark.parametrize(
    ("user_id", "expected"),
    [
        (f"machine-{MID}", MID),
        (f"machine-{MID.upper()}", None),
        ("guest", None),
        ("machine-", None),
        (f"machine-{MID}x", None),
        (None, None),
        ("", None),
    ],
)
def test_machine_id_from_username(user_id: str | None, expected: str | None) -> None:
    assert machine_id_from_username(user_id) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (f"machine.{MID}.heartbeat", EventRoutingKey(MID, "heartbeat")),
        (f"machine.{MID}.run.r1.output", EventRoutingKey(MID, "output", "r1")),
        (f"machine.{MID}.run.r1", None),
        (f"machine.{MID}.claim.r1", EventRoutingKey(MID, "claim", "r1")),
        (f"machine.{MID}.claim", None),
        (f"machine.{MID}.claim.r1.extra", None),
        (f"machine.{MID}.run.r1.output.extra", None),
        (f"machine.{MID}.heartbeat.extra", None),
        (f"machine.{MID}", None),
        ("machine.not-a-uuid.heartbeat", None),
        (f"server.{MID}.heartbeat", None),
        ("", None),
    ],
)
def test_parse_event_routing_key(key: str, expected: EventRoutingKey | None) -> None:
    assert parse_event_routing_key(key) == expected


@pytest.mark.parametrize(
    ("run_id", "kind"), [("a.b", "output"), ("r1", "#"), ("r1", "*"), ("", "output"), ("r1", "")]
)
def test_run_event_key_refuses_words_that_would_change_its_shape(run_id: str, kind: str) -> None:
    with pytest.raises(ValueError, match="must be 1-64 characters"):
        run_event_routing_key(MID, run_id, kind)


@pytest.mark.parametrize("bad", ["", "x", MID.upper(), MID.replace("-", ""), f"{MID}.#", "#"])
def test_every_name_refuses_a_bad_machine_id(bad: str) -> None:
    for name in (machine_username, machine_routing_key, jobs_queue, control_queue):
        with pytest.raises(ValueError, match="machine id"):
            name(bad)


def test_queue_arguments_dead_letter_everything_but_the_dead_letter_queue() -> None:
    assert queue_arguments("jobs") == {
        "x-queue-type": "classic",
        "x-dead-letter-exchange": "tama.dead",
        "x-max-priority": 10,
    }
    for kind in ("control", "server_events"):
        assert queue_arguments(kind) == {
            "x-queue-type": "classic",
            "x-dead-letter-exchange": "tama.dead",
        }
    assert queue_arguments("dead") == {"x-queue-type": "classic"}
