"""The spool's file: its statements run on the event loop, and the log they write is copied into
the database by checkpoints off the loop, so it stays small however long the daemon runs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from taskmachine.daemon.executor import spool as spool_module
from taskmachine.daemon.executor.spool import Spool
from taskmachine.wire.runs import RunFinished, RunOutput


async def test_the_log_is_checkpointed_as_events_come_and_go_and_nothing_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "CHECKPOINT_EVERY", 32)
    path = tmp_path / "spool.db"
    spool = await Spool.open(path)
    run_id = uuid.uuid4()
    body = "x" * 2000
    rounds, per_round = 12, 48
    seq = 0
    wal_sizes = []
    for _ in range(rounds):
        appended = []
        for _ in range(per_round):
            event = RunOutput(
                run_id=run_id,
                attempt=1,
                seq=seq,
                sent_at=datetime.now(UTC),
                events=[{"kind": "text", "text": body}],
            )
            appended.append((await spool.append(event, "machine.m.run.r.output")).id)
            seq += 1
        await spool.delete(appended[:-1])  # the broker confirmed all but the last
        await asyncio.sleep(0.05)  # a checkpoint, if one started, runs meanwhile
        wal_sizes.append(path.with_name("spool.db-wal").stat().st_size)
    # Without checkpoints the log holds every page written: ~20 MB here.
    assert max(wal_sizes) < 4 * 1024 * 1024, wal_sizes
    finished = RunFinished(
        run_id=run_id, attempt=1, seq=seq, sent_at=datetime.now(UTC), outcome="succeeded"
    )
    await spool.append(finished, "machine.m.run.r.finished")
    await spool.close()

    reopened = await Spool.open(path)
    try:
        left = await reopened.pending()
        assert [event.seq for event in left] == [
            *(round_ * per_round + per_round - 1 for round_ in range(rounds)),
            seq,
        ]
        assert await reopened.unfinished() == []  # the finish advanced the run's row
    finally:
        await reopened.close()
