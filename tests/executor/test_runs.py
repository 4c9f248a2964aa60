"""One run through the executor with fake CLIs: success, the run's environment, crashes, hangs,
limits, huge and non-UTF-8 output — as the server sees it on tama.server.events."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from taskmachine.wire.runs import RunFinished, RunOutput, RunStarted
from tests.executor.conftest import (
    EventLog,
    MakeHarness,
    Publish,
    adapter_for,
    fake_cli,
    make_job,
    minimal_env,
    seqs,
    texts,
)


async def test_a_run_from_job_to_finished_report(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    harness = await make_harness(adapter_factory=adapter_for(fake_cli(tmp_path, "claude_ok.sh")))
    job = make_job(prompt="build the thing")

    await publish_job(job)
    finished = await event_log.finished(job.run_id)

    events = event_log.of(job.run_id)
    assert isinstance(events[0], RunStarted) and events[0].seq == 0
    assert seqs(events) == list(range(len(events)))
    assert finished.outcome == "succeeded", finished
    assert finished.exit_code == 0 and finished.failure_code is None
    assert finished.session_id == "fake-session-ok"
    assert finished.usage["input_tokens"] == 10 and finished.cost_usd == 0.01
    assert finished.diff_stat is None
    assert "Working on: build the thing" in texts(events)
    # Every event was published as this machine's broker user (validated by the broker).
    assert event_log.senders(job.run_id) == {harness.machine.username}
    # It ran in <root>/<workspace>/<subject>.
    folder = harness.config.execution_root / str(job.workspace_id) / str(job.subject_id)
    assert (folder / "done.txt").read_text() == "build the thing\n"
    assert harness.claimer.calls == [(job.run_id, 1)]
    assert harness.executor.active_runs() == []


async def test_the_agent_gets_its_run_token_api_url_and_tama_on_path(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    tama_bin = tmp_path / "tama-bin"
    tama_bin.mkdir()
    (tama_bin / "tama").write_text("#!/bin/sh\n")
    (tama_bin / "tama").chmod(0o755)
    env = minimal_env(tmp_path, TASKMACHINE_HOME="/secret/machine/home")
    harness = await make_harness(
        adapter_factory=adapter_for(fake_cli(tmp_path, "claude_env.sh")),
        env=env,
        tama_bin_dir=tama_bin,
    )
    job = make_job()

    await publish_job(job)
    assert (await event_log.finished(job.run_id)).outcome == "succeeded"

    lines = texts(event_log.of(job.run_id))
    assert "TASKMACHINE_RUN_TOKEN=run-token-secret" in lines
    assert "TASKMACHINE_API_URL=http://127.0.0.1:9" in lines
    assert f"TASKMACHINE_RUN_ID={job.run_id}" in lines
    # The daemon's own settings do not leak into the run.
    assert "TASKMACHINE_HOME=unset" in lines
    assert f"tama={tama_bin / 'tama'}" in lines
    # An isolated CLI home per workspace and subject, under the state dir.
    home = harness.config.state_dir / "cli-homes" / str(job.workspace_id) / str(job.subject_id)
    assert f"CLAUDE_CONFIG_DIR={home / 'claude'}" in lines


async def test_a_crash_fails_with_the_error_tail(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    await make_harness(adapter_factory=adapter_for(fake_cli(tmp_path, "claude_crash.sh")))
    job = make_job(prompt="crash please")

    await publish_job(job)
    finished = await event_log.finished(job.run_id)

    assert finished.outcome == "failed"
    assert finished.failure_code == "cli_error"
    assert finished.exit_code == -9
    assert finished.error is not None and "Segmentation fault" in finished.error
    assert finished.session_id == "fake-session-1"
    # What it said before dying was streamed.
    assert "Working on: crash please" in texts(event_log.of(job.run_id))


async def test_the_error_excerpt_is_the_last_2_kb(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    script = tmp_path / "noisy"
    script.write_text(
        "#!/bin/sh\ncat >/dev/null\nhead -c 100000 /dev/zero | tr '\\0' x >&2\n"
        "echo >&2\necho 'the real reason' >&2\nexit 3\n"
    )
    script.chmod(0o755)
    await make_harness(adapter_factory=adapter_for(script))
    job = make_job()

    await publish_job(job)
    finished = await event_log.finished(job.run_id)

    assert finished.outcome == "failed" and finished.exit_code == 3
    assert finished.error is not None
    assert finished.error.endswith("the real reason")
    assert len(finished.error.encode()) <= 2048


async def test_a_missing_cli_fails_to_spawn(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    await make_harness(adapter_factory=adapter_for(tmp_path / "no-such-claude"))
    job = make_job()

    await publish_job(job)
    finished = await event_log.finished(job.run_id)

    assert finished.outcome == "failed" and finished.failure_code == "spawn_failed"
    assert "not found" in (finished.error or "")


async def test_an_unknown_runtime_fails_without_starting_anything(
    make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    await make_harness()
    job = make_job(runtime="gemini")

    await publish_job(job)
    finished = await event_log.finished(job.run_id)

    assert finished.outcome == "failed" and finished.failure_code == "spawn_failed"
    assert "no adapter for runtime 'gemini'" in (finished.error or "")


async def test_no_output_for_the_idle_limit_is_a_timeout(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    await make_harness(adapter_factory=adapter_for(fake_cli(tmp_path, "claude_silent.sh")))
    job = make_job(idle=0.6, hard=30, grace=0.5)

    began = time.monotonic()
    await publish_job(job)
    finished = await event_log.finished(job.run_id)

    assert finished.outcome == "timeout" and finished.failure_code == "timeout"
    assert "no output for 0.6 s" in (finished.error or "")
    assert finished.session_id == "fake-session-silent"
    assert time.monotonic() - began < 5


async def test_the_hard_limit_stops_a_run_that_keeps_talking(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    await make_harness(adapter_factory=adapter_for(fake_cli(tmp_path, "claude_chatty.sh")))
    job = make_job(idle=0.5, hard=1.2, grace=0.5)

    await publish_job(job)
    finished = await event_log.finished(job.run_id)

    assert finished.outcome == "timeout" and finished.failure_code == "timeout"
    assert "exceeded its 1.2 s limit" in (finished.error or "")
    # It talked all along (so the idle limit never applied).
    assert texts(event_log.of(job.run_id)).count("still going") >= 5


async def test_huge_lines_are_cut_and_the_run_still_succeeds(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    codex = fake_cli(tmp_path, "codex_huge_lines.sh", "codex")
    await make_harness(adapter_factory=adapter_for(codex, "codex"))
    job = make_job(runtime="codex")

    await publish_job(job)
    finished = await event_log.finished(job.run_id, within=30)

    assert finished.outcome == "succeeded", finished
    outputs = [e for e in event_log.of(job.run_id) if isinstance(e, RunOutput)]
    assert all(len(e.to_body()) < 300_000 for e in outputs)
    [text] = [t for t in texts(outputs) if t.startswith("aaa")]
    assert "truncated" in text


async def test_bytes_that_are_not_utf8_do_not_break_the_stream(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    codex = fake_cli(tmp_path, "codex_non_utf8.sh", "codex")
    await make_harness(adapter_factory=adapter_for(codex, "codex"))
    job = make_job(runtime="codex")

    await publish_job(job)
    finished = await event_log.finished(job.run_id)

    assert finished.outcome == "succeeded", finished
    assert finished.session_id == "t-2"
    assert any(t.startswith("caf\ufffd") for t in texts(event_log.of(job.run_id)))


async def test_a_flood_of_output_is_coalesced_and_every_line_arrives_in_order(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    env = minimal_env(tmp_path, FAKE_STEPS="3000")
    await make_harness(adapter_factory=adapter_for(fake_cli(tmp_path, "claude_steps.sh")), env=env)
    job = make_job()

    await publish_job(job)
    finished = await event_log.finished(job.run_id)

    assert finished.outcome == "succeeded"
    events = event_log.of(job.run_id)
    assert seqs(events) == list(range(len(events)))
    assert texts(events) == [f"step {i}" for i in range(3000)]
    outputs = [e for e in events if isinstance(e, RunOutput)]
    assert len(outputs) < 100, f"{len(outputs)} output messages for 3000 lines"
    assert all(len(e.to_body()) <= 64 * 1024 + 4096 for e in outputs)


async def test_a_line_after_a_pause_is_sent_at_once(
    tmp_path: Path, make_harness: MakeHarness, publish_job: Publish, event_log: EventLog
) -> None:
    env = minimal_env(tmp_path, FAKE_STEPS="4", FAKE_PAUSE="0.3")
    await make_harness(adapter_factory=adapter_for(fake_cli(tmp_path, "claude_steps.sh")), env=env)
    job = make_job()

    await publish_job(job)
    await event_log.finished(job.run_id)

    outputs = [e for e in event_log.of(job.run_id) if isinstance(e, RunOutput)]
    # Each step came after an idle stream, so each went out alone, about 0.3 s apart.
    steps = [e for e in outputs if any(i.get("text", "").startswith("step") for i in e.events)]
    assert [len(e.events) for e in steps] == [1, 1, 1, 1]
    gaps = [(b.sent_at - a.sent_at).total_seconds() for a, b in itertools.pairwise(steps)]
    assert all(0.2 < gap < 0.6 for gap in gaps), gaps
    assert isinstance(event_log.of(job.run_id)[-1], RunFinished)
