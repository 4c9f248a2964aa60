import { useEffect, useState } from "react";
import { useSubscription } from "urql";
import type { RunLiveFieldsFragment } from "../../gql/graphql";
import { RunChangedDocument } from "./queries";
import { ACTIVE_RUN_STATUSES } from "./runMeta";

const ORDER = ["QUEUED", "DISPATCHED", "CLAIMED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];

/** How far a run has come: a later attempt, or a later status in the same attempt. */
export function runProgress(run: Pick<RunLiveFieldsFragment, "attempt" | "status">): number {
  return run.attempt * 100 + Math.max(0, ORDER.indexOf(run.status));
}

/**
 * The run as loaded, kept current by `runChanged` while it is active. A pushed state wins unless
 * the loaded one has come further (a reload after the push); urql shares one subscription per run
 * between the components that ask.
 */
export function useLiveRun<T extends RunLiveFieldsFragment>(run: T | null | undefined): T | null {
  const active = run ? ACTIVE_RUN_STATUSES.has(run.status) : false;
  const [live] = useSubscription({
    query: RunChangedDocument,
    variables: { runId: run?.id ?? "" },
    pause: !run || !active,
  });
  const [pushed, setPushed] = useState<RunLiveFieldsFragment | null>(null);
  useEffect(() => {
    const next = live.data?.runChanged;
    if (next) setPushed(next);
  }, [live.data]);
  if (!run) return null;
  if (!pushed || pushed.id !== run.id || runProgress(pushed) < runProgress(run)) return run;
  return { ...run, ...pushed };
}

/** The current time, ticking every second while `running` (for a live duration). */
export function useNow(running: boolean): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!running) return;
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [running]);
  return now;
}
