export const ACTIVE_RUN_STATUSES = new Set(["QUEUED", "DISPATCHED", "CLAIMED", "RUNNING"]);
/** Runs that `retryRun` takes (the server refuses the others). */
export const RETRYABLE_RUN_STATUSES = new Set(["FAILED", "CANCELLED"]);

const LABELS: Record<string, string> = {
  QUEUED: "Queued",
  DISPATCHED: "Dispatched",
  CLAIMED: "Claimed",
  RUNNING: "Running",
  SUCCEEDED: "Succeeded",
  FAILED: "Failed",
  CANCELLED: "Cancelled",
};

/** The failure table's codes in words (platform and agent side); unknown codes show as they are. */
const FAILURES: Record<string, string> = {
  runtime_offline: "the machine did not pick the run up in time",
  lease_lost: "the machine stopped reporting while it ran",
  timeout: "it ran too long or went quiet",
  budget_exhausted: "the budget ran out",
  cli_error: "the coding CLI failed",
  auth: "the model provider refused the credentials",
  quota: "the model provider's rate limit or quota was hit",
  config: "the runtime's setup is wrong (model, flag or session)",
  cancelled: "it was cancelled",
};

export function runStatusLabel(status: string): string {
  return LABELS[status] ?? status;
}

export function failureLabel(code: string | null | undefined): string {
  if (!code) return "";
  return FAILURES[code] ?? code.replace(/_/g, " ");
}

export function runBadgeClass(status: string): string {
  if (status === "SUCCEEDED") return "badge badge--ok";
  if (status === "FAILED") return "badge badge--danger";
  if (ACTIVE_RUN_STATUSES.has(status)) return "badge badge--warn";
  return "badge";
}

/** How long a run took, or has taken so far while it runs (from its start to `now`). */
export function runDurationMs(
  run: { durationMs?: number | null; startedAt?: string | null; finishedAt?: string | null },
  now: number,
): number | null {
  if (run.durationMs !== null && run.durationMs !== undefined) return run.durationMs;
  if (!run.startedAt) return null;
  const start = new Date(run.startedAt).getTime();
  const end = run.finishedAt ? new Date(run.finishedAt).getTime() : now;
  return Number.isNaN(start) ? null : Math.max(0, end - start);
}
