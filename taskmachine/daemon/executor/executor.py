"""The jobs-queue consumer: takes run jobs as slots free up, claims them, runs them.

Consuming happens in rounds, so that prefetch always equals the free slots: set QoS to the free
slots, consume, and on the first delivery cancel the consumer, then take what arrived. Each taken
delivery holds a slot until its run ends (or it is dropped). While every slot is busy nothing is
consumed, so jobs wait in the broker's priority queue, where a later high-priority job overtakes
earlier low-priority ones.

A delivery is:
    malformed            rejected without requeue (dead-lettered) and logged
    known here already   a duplicate: acked and dropped (the spool remembers attempts)
    claim refused        acked and dropped
    claim unanswered     requeued after a short backoff (the server's claim deadline backstops)
    claim accepted       acked, then run (after stopping an older attempt of it still here)

On start, attempts the spool shows as claimed or running died with the previous daemon process:
whatever is left of their process group is killed and they are reported finished, failed
`daemon_restart` (the server decides on a retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)

from taskmachine.background import stop_task
from taskmachine.daemon.adapters import Adapter, ProviderOverrides, get_adapter
from taskmachine.daemon.config import MachineConfig
from taskmachine.daemon.executor.claim import BrokerClaimer, Claimer, ClaimUnavailable
from taskmachine.daemon.executor.provider import load_provider_overrides
from taskmachine.daemon.executor.publisher import EventPublisher
from taskmachine.daemon.executor.runner import Run, RunSettings
from taskmachine.daemon.executor.spool import Spool, SpooledRun
from taskmachine.wire.control import ClaimAnswer
from taskmachine.wire.errors import WireError
from taskmachine.wire.messages import ActiveRun
from taskmachine.wire.runs import RunFinished, RunJob
from taskmachine.wire.topology import machine_username, open_events_exchange, open_machine_queues

log = logging.getLogger(__name__)

AdapterFactory = Callable[[str], Adapter]

SPOOL_FILENAME = "spool.db"
CLAIM_RETRY_SECONDS = 2.0
# Finished attempts are remembered this long, to recognise late duplicate deliveries.
REMEMBER_SECONDS = 7 * 24 * 3600.0
# How long drain waits for the finished reports to be confirmed by the broker.
REPORT_SECONDS = 10.0


class RunExecutor:
    """Runs this machine's jobs. The daemon calls `start(connection)` after every (re)connect,
    `cancel` on a CancelRun, `capacity`/`active_runs` for heartbeats, `drain` on stop, `close`
    last."""

    def __init__(
        self,
        config: MachineConfig,
        machine_id: uuid.UUID | str,
        claimer: Claimer,
        *,
        adapter_factory: AdapterFactory | None = None,
        provider_overrides: ProviderOverrides | None = None,
        isolate_cli_homes: bool = True,
        max_retries: int | None = None,
        claim_retry_seconds: float = CLAIM_RETRY_SECONDS,
        base_env: dict[str, str] | None = None,
        tama_bin_dir: Path | None = None,
    ) -> None:
        self._config = config
        self._machine_id = str(machine_id)
        self._claimer = claimer
        self._adapter_factory = adapter_factory or self._default_adapter
        self._claim_retry = claim_retry_seconds
        self._settings = RunSettings(
            execution_root=config.execution_root,
            cli_homes=config.state_dir / "cli-homes" if isolate_cli_homes else None,
            permission_ceiling=config.permission_ceiling,
            workspace_repos=dict(config.workspace_repos),
            provider_overrides=provider_overrides or load_provider_overrides(config),
            max_retries=max_retries,
            base_env=base_env,
            tama_bin_dir=tama_bin_dir or Path(sys.executable).parent,
        )
        self._spool: Spool | None = None
        self._publisher: EventPublisher | None = None
        # Attempts taken from the queue (claiming or running), each holding a slot.
        self._runs: dict[tuple[uuid.UUID, int], Run] = {}
        # Set when an attempt taken here is done with (its report spooled, or dropped).
        self._ended: dict[tuple[uuid.UUID, int], asyncio.Event] = {}
        self._claimed: set[tuple[uuid.UUID, int]] = set()
        self._held = 0
        self._slot_freed = asyncio.Event()
        self._draining = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None
        self._jobs: tuple[AbstractChannel, AbstractQueue] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._start_lock = asyncio.Lock()
        # What the runs reported, newest last (logs and tests read it).
        self.finished: list[RunFinished] = []

    def _default_adapter(self, runtime: str) -> Adapter:
        return get_adapter(runtime, self._config.runtime_paths.get(runtime))

    # -- what the daemon reads ------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._config.max_concurrency

    @property
    def free_slots(self) -> int:
        return max(self.capacity - self._held, 0)

    def active_runs(self) -> list[ActiveRun]:
        """Claimed attempts that have not finished (their leases need renewing)."""
        return [
            ActiveRun(run_id=run_id, attempt=attempt)
            for (run_id, attempt), run in self._runs.items()
            if (run_id, attempt) in self._claimed and run.finished is None
        ]

    @property
    def publisher(self) -> EventPublisher:
        assert self._publisher is not None, "start() first"
        return self._publisher

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, connection: AbstractConnection) -> None:
        """Use this connection (the first, or a new one after a reconnect): publish the spool's
        events through it and consume the jobs queue. The first call also recovers from a
        previous daemon process that died mid-run."""
        async with self._start_lock:
            if self._spool is None:
                await self._open_spool()
            assert self._publisher is not None
            events = await connection.channel(publisher_confirms=True)
            exchange = await open_events_exchange(events)
            self._publisher.attach(exchange)
            if isinstance(self._claimer, BrokerClaimer):
                self._claimer.attach(exchange)
            jobs = await connection.channel()
            queues = await open_machine_queues(jobs, self._machine_id)
            await stop_task(self._consumer)
            self._consumer = None
            self._jobs = (jobs, queues.jobs)
            if not self._draining.is_set():
                self._start_consumer()

    def _start_consumer(self) -> None:
        if self._jobs is None or self._jobs[0].is_closed:
            return  # the next start(connection) consumes
        self._consumer = asyncio.create_task(self._consume(*self._jobs), name="tama-jobs-consumer")

    async def resume(self) -> None:
        """Take jobs again after a drain that did not end the daemon (an update that failed)."""
        if not self._draining.is_set():
            return
        if self._consumer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        self._draining.clear()
        self._start_consumer()

    async def _open_spool(self) -> None:
        spool = await Spool.open(self._config.state_dir / SPOOL_FILENAME)
        self._spool = spool
        self._publisher = EventPublisher(
            spool, self._machine_id, machine_username(self._machine_id)
        )
        await spool.prune(REMEMBER_SECONDS)
        for dead in await spool.unfinished():
            await self._report_dead(dead)
        self._publisher.start()

    async def _report_dead(self, dead: SpooledRun) -> None:
        assert self._publisher is not None
        if dead.pid is not None:
            await asyncio.to_thread(_end_leftover_group, dead.pid, dead.run_id)
        log.warning(
            "run %s attempt %d was in progress when the daemon stopped: reporting it failed",
            dead.run_id,
            dead.attempt,
        )
        await self._publisher.emit(
            RunFinished(
                run_id=dead.run_id,
                attempt=dead.attempt,
                seq=dead.next_seq,
                sent_at=datetime.now(UTC),
                outcome="failed",
                failure_code="daemon_restart",
                error="the daemon stopped while the run was in progress",
            )
        )

    def claim_answered(self, answer: ClaimAnswer) -> None:
        if isinstance(self._claimer, BrokerClaimer):
            self._claimer.answered(answer)
        else:
            log.info("answer to claim %s dropped: claims go over HTTP here", answer.claim_id)

    async def cancel(self, run_id: uuid.UUID, attempt: int) -> bool:
        """Stop a run: SIGTERM to its process group, SIGKILL after the job's grace; it reports
        `cancelled`. False if this machine does not have that attempt."""
        run = self._runs.get((run_id, attempt))
        if run is None or run.finished is not None:
            log.info("cancel of run %s attempt %d: not running here", run_id, attempt)
            return False
        log.info("cancelling run %s attempt %d", run_id, attempt)
        run.stop("cancel")
        return True

    # A budget for the whole drain (many awaits), not one operation: hence a parameter.
    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Stop taking jobs; let the runs finish (up to `timeout` seconds, None: as long as their
        own limits allow), then stop the rest (failed `daemon_stopped`); wait for the finished
        reports to reach the broker (briefly: they are safe in the spool anyway)."""
        self._draining.set()
        self._slot_freed.set()
        if self._consumer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.warning(
                    "%d run(s) still going after the drain timeout: stopping them", len(pending)
                )
                for run in list(self._runs.values()):
                    run.stop("drain")
                await asyncio.gather(*pending, return_exceptions=True)
        if self._publisher is not None and not await self._publisher.wait_sent(
            within=REPORT_SECONDS
        ):
            log.warning("some run events wait in the spool; they are sent on the next start")

    async def close(self) -> None:
        """After drain: stop the publisher and close the spool."""
        self._draining.set()
        self._slot_freed.set()
        for task in (self._consumer, *self._tasks):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._consumer, *self._tasks) if t is not None), return_exceptions=True
        )
        if self._publisher is not None:
            await self._publisher.stop()
        if self._spool is not None:
            await self._spool.close()
            self._spool = None

    # -- consuming ------------------------------------------------------------------------------

    async def _consume(self, channel: AbstractChannel, queue: AbstractQueue) -> None:
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        try:
            while not self._draining.is_set():
                while self.free_slots == 0 and not self._draining.is_set():
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                if self._draining.is_set():
                    break
                if inbox.empty():
                    await channel.set_qos(prefetch_count=self.free_slots)
                    tag = await queue.consume(inbox.put, no_ack=False)
                    try:
                        await self._first_of(inbox)
                        # Start on what has come before the cancel's round trip; the round's
                        # prefetch (= free slots) bounds what else can arrive meanwhile.
                        while not inbox.empty():
                            self._take(inbox.get_nowait())
                    finally:
                        if not channel.is_closed:
                            await queue.cancel(tag)
                    # Deliveries the broker sent before the cancel have been handed over now.
                    await asyncio.sleep(0)
                while not inbox.empty():
                    self._take(inbox.get_nowait())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The channel went away; the daemon calls start() again on its next connection.
            log.warning("jobs consumer stopped: %s", str(exc) or type(exc).__name__)
        finally:
            # Unacked deliveries still here go back to the queue when the channel closes.
            while not inbox.empty():
                message = inbox.get_nowait()
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)

    async def _first_of(self, inbox: asyncio.Queue[AbstractIncomingMessage]) -> None:
        """Wait for a delivery (left in the inbox) or for draining."""
        getter = asyncio.ensure_future(inbox.get())
        draining = asyncio.ensure_future(self._draining.wait())
        try:
            await asyncio.wait({getter, draining}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            draining.cancel()
            if getter.done():
                inbox.put_nowait(getter.result())
            else:
                getter.cancel()

    def _take(self, message: AbstractIncomingMessage) -> None:
        self._held += 1
        task = asyncio.create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _release(self) -> None:
        self._held -= 1
        self._slot_freed.set()

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            if self.free_slots < 0 or self._held > self.capacity:
                # More arrived than there are slots (a late delivery): back to the queue.
                await message.nack(requeue=True)
                return
            await self._claim_and_run(message)
        except Exception:
            log.exception("run job handling failed")
        finally:
            self._release()

    async def _claim_and_run(self, message: AbstractIncomingMessage) -> None:
        assert self._spool is not None and self._publisher is not None
        try:
            job = RunJob.parse(message.body)
        except WireError as exc:
            log.warning("run job dead-lettered: %s", exc)
            await message.reject(requeue=False)
            return
        key = (job.run_id, job.attempt)
        if key in self._runs or not await self._spool.claimed(job.run_id, job.attempt):
            log.info("run %s attempt %d: duplicate delivery dropped", job.run_id, job.attempt)
            await message.ack()
            return
        run = self._new_run(job)
        self._runs[key] = run
        ended = self._ended[key] = asyncio.Event()
        # Its folder is made while the claim's round trip is out (when that is harmless).
        run.prepare_early()
        try:
            try:
                accepted = await self._claimer.claim(job.run_id, job.attempt)
            except ClaimUnavailable as exc:
                log.warning(
                    "run %s attempt %d: claim not possible now (%s); requeued",
                    job.run_id,
                    job.attempt,
                    exc,
                )
                await self._spool.forget(job.run_id, job.attempt)
                await asyncio.sleep(self._claim_retry)
                await message.nack(requeue=True)
                return
            if not accepted:
                await self._spool.forget(job.run_id, job.attempt)
                await message.ack()
                return
            self._claimed.add(key)
            with contextlib.suppress(Exception):
                # If the channel is gone the job comes back, and is dropped as a duplicate.
                await message.ack()
            await self._stop_superseded(job)
            finished = await run.execute()
            self.finished.append(finished)
            log.info(
                "run %s attempt %d finished: %s%s",
                job.run_id,
                job.attempt,
                finished.outcome,
                f" ({finished.failure_code})" if finished.failure_code else "",
            )
        finally:
            self._runs.pop(key, None)
            self._claimed.discard(key)
            self._ended.pop(key, None)
            ended.set()

    async def _stop_superseded(self, job: RunJob) -> None:
        """A newer attempt of a run means the server gave up on the older ones (their reports
        are ignored, their tokens refused): stop any still running here, e.g. after an outage
        longer than the lease, and let them end before the new attempt takes the run's folder."""
        older = [
            (run, self._ended[key])
            for key, run in self._runs.items()
            if key[0] == job.run_id and key[1] < job.attempt and key in self._ended
        ]
        if not older:
            return
        for run, _ in older:
            log.warning(
                "run %s attempt %d superseded by attempt %d: stopping it",
                job.run_id,
                run.job.attempt,
                job.attempt,
            )
            run.stop("cancel")
        # SIGKILL follows the old attempt's grace; past that, something else holds it up.
        grace = max(run.job.limits.cancel_grace_seconds for run, _ in older) + 5.0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await asyncio.gather(*(ended.wait() for _, ended in older))

    def _new_run(self, job: RunJob) -> Run:
        assert self._spool is not None and self._publisher is not None
        spool = self._spool
        adapter: Adapter | None = None
        error: str | None = None
        try:
            adapter = self._adapter_factory(job.runtime)
        except ValueError as exc:
            error = str(exc)

        async def on_spawn(pid: int | None) -> None:
            await spool.set_process(job.run_id, job.attempt, pid)

        return Run(
            job,
            adapter,
            self._settings,
            self._publisher.emit,
            on_spawn=on_spawn,
            adapter_error=error,
        )


def _end_leftover_group(pgid: int, run_id: uuid.UUID) -> None:
    """Kill a dead daemon's orphaned run (its process group), if it is still that run."""
    environ = Path(f"/proc/{pgid}/environ")
    try:
        marker = f"TASKMACHINE_RUN_ID={run_id}".encode()
        if marker not in environ.read_bytes().split(b"\0"):
            return
    except OSError:
        # Gone already (or no /proc here: then we cannot tell it is ours; leave it).
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
        log.warning("killed the leftover process group %d of run %s", pgid, run_id)
