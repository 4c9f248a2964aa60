export const ACTIVE_RUN_STATUSES = new Set(["QUEUED", "DISPATCHED", "CLAIMED", "RUNNING"]);

const LABELS: Record<string, string> = {
  QUEUED: "Queued",
  DISPATCHED: "Dispatched",
  CLAIMED: "Claimed",
  RUNNING: "Running",
  SUCCEEDED: "Succeeded",
  FAILED: "Failed",
  CANCELLED: "Cancelled",
};

export function runStatusLabel(status: string): string {
  return LABELS[status] ?? status;
}

export function runBadgeClass(status: string): string {
  if (status === "SUCCEEDED") return "badge badge--ok";
  if (status === "FAILED") return "badge badge--danger";
  if (ACTIVE_RUN_STATUSES.has(status)) return "badge badge--warn";
  return "badge";
}
