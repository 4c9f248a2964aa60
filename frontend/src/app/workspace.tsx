import { createContext, useContext, type ReactNode } from "react";
import type { SessionWorkspace } from "./session";

export interface WorkspaceContextValue {
  workspace: SessionWorkspace;
  can: (permission: string) => boolean;
}

const WorkspaceContext = createContext<WorkspaceContextValue | null>(null);

export function WorkspaceProvider({
  workspace,
  children,
}: {
  workspace: SessionWorkspace;
  children: ReactNode;
}) {
  const granted = new Set(workspace.viewerPermissions);
  const value = { workspace, can: (permission: string) => granted.has(permission) };
  return <WorkspaceContext.Provider value={value}>{children}</WorkspaceContext.Provider>;
}

export function useWorkspace(): WorkspaceContextValue {
  const value = useContext(WorkspaceContext);
  if (!value) throw new Error("useWorkspace outside WorkspaceProvider");
  return value;
}

/** Renders its children only when the viewer holds the permission: actions are hidden, not disabled. */
export function Can({ permission, children }: { permission: string; children: ReactNode }) {
  const { can } = useWorkspace();
  return can(permission) ? <>{children}</> : null;
}

const LAST_WORKSPACE_KEY = "taskmachine.workspace";

export function rememberWorkspace(id: string): void {
  try {
    localStorage.setItem(LAST_WORKSPACE_KEY, id);
  } catch {
    // Private mode or storage full: remembering is a convenience only.
  }
}

export function lastWorkspace(): string | null {
  try {
    return localStorage.getItem(LAST_WORKSPACE_KEY);
  } catch {
    return null;
  }
}
