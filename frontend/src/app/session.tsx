import { createContext, useContext, useMemo, type ReactNode } from "react";
import { useQuery } from "urql";
import { graphql } from "../gql";
import type { SessionQuery } from "../gql/graphql";
import { ErrorMessage } from "../components/ErrorMessage";
import { Loading } from "../components/Loading";
import { hasCode } from "../lib/errors";
import { SignIn } from "../views/SignIn";

export const SessionDocument = graphql(`
  query Session {
    me {
      id
      email
      name
    }
    workspaces {
      id
      name
      slug
      viewerPermissions
    }
  }
`);

export type SessionUser = SessionQuery["me"];
export type SessionWorkspace = SessionQuery["workspaces"][number];

export interface Session {
  user: SessionUser;
  workspaces: SessionWorkspace[];
}

const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside SessionGate");
  return session;
}

/** Asks the API who is signed in: shows sign-in when nobody is, the app otherwise. */
export function SessionGate({ children }: { children: ReactNode }) {
  const [{ data, fetching, error }, refetch] = useQuery({ query: SessionDocument });
  const session = useMemo<Session | null>(
    () => (data ? { user: data.me, workspaces: data.workspaces } : null),
    [data],
  );
  if (fetching && !data) return <Loading label="Signing you in…" />;
  if (hasCode(error, "UNAUTHENTICATED")) {
    rememberReturnPath();
    return <SignIn />;
  }
  if (error && !session) {
    return (
      <div className="page">
        <ErrorMessage error={error} onRetry={() => refetch({ requestPolicy: "network-only" })} />
      </div>
    );
  }
  if (!session) return <SignIn />;
  return <SessionContext.Provider value={session}>{children}</SessionContext.Provider>;
}

/** Ends the session on the server (clears the HttpOnly cookie), then reloads into sign-in. */
export async function signOut(): Promise<void> {
  const response = await fetch("/auth/signout", { method: "POST", credentials: "same-origin" });
  if (!response.ok && response.status !== 303 && response.status !== 302) {
    throw new Error(`Sign-out failed (HTTP ${response.status}).`);
  }
  window.location.assign("/");
}

const RETURN_KEY = "taskmachine.returnTo";

/** Where a signed-out visitor was going (e.g. the machine approval page), for after sign-in. */
function rememberReturnPath(): void {
  const path = window.location.pathname + window.location.search;
  if (path === "/" || path.startsWith("/auth/")) return;
  try {
    localStorage.setItem(RETURN_KEY, path);
  } catch {
    // Storage unavailable: the visitor lands on the board instead.
  }
}

/** The remembered path, once: reading it forgets it. */
export function takeReturnPath(): string | null {
  try {
    const path = localStorage.getItem(RETURN_KEY);
    localStorage.removeItem(RETURN_KEY);
    return path && path.startsWith("/") && !path.startsWith("//") ? path : null;
  } catch {
    return null;
  }
}
