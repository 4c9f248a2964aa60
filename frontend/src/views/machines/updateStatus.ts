/** Machine.updateStatus: CURRENT, OUTDATED, UNSUPPORTED, QUEUED, UPDATING or FAILED. */
export function updateBadge(status: string): { label: string; tone: "ok" | "warn" | "danger" } | null {
  switch (status) {
    case "OUTDATED":
      return { label: "Update available", tone: "warn" };
    case "UNSUPPORTED":
      return { label: "Update required: no new work until updated", tone: "danger" };
    case "QUEUED":
      return { label: "Update queued", tone: "warn" };
    case "UPDATING":
      return { label: "Updating…", tone: "warn" };
    case "FAILED":
      return { label: "Update failed", tone: "danger" };
    default:
      return null;
  }
}

/** "Update now" makes sense only when the machine is behind and no update is under way. */
export function canRequestUpdate(status: string): boolean {
  return status === "OUTDATED" || status === "UNSUPPORTED" || status === "FAILED";
}
