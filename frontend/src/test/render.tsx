import { render } from "@testing-library/react";
import type { ReactElement } from "react";
import { MemoryRouter, Route, Routes } from "react-router";
import { Provider, type Client } from "urql";
import { fromValue, never, pipe, mergeMap, fromPromise } from "wonka";
import type { DocumentNode, OperationDefinitionNode } from "graphql";
import { WorkspaceProvider } from "../app/workspace";
import type { SessionWorkspace } from "../app/session";

export type Responder = (operation: { name: string; variables: Record<string, unknown> }) => unknown;

function operationName(query: DocumentNode): string {
  const op = query.definitions.find((d): d is OperationDefinitionNode => d.kind === "OperationDefinition");
  return op?.name?.value ?? "";
}

/**
 * A urql client whose answers come from `respond` (by operation name). Subscriptions never emit
 * unless `respond` returns a value for them. Calls are recorded for assertions.
 */
export function mockClient(respond: Responder) {
  const calls: { name: string; variables: Record<string, unknown> }[] = [];
  const answer = (query: DocumentNode, variables: Record<string, unknown> = {}) => {
    const name = operationName(query);
    calls.push({ name, variables });
    const value = respond({ name, variables });
    return value;
  };
  const toSource = (value: unknown) => {
    if (value === undefined) return never;
    if (value instanceof Promise) return pipe(fromPromise(value), mergeMap((v) => fromValue(v as never)));
    return fromValue(value as never);
  };
  const client = {
    executeQuery: ({ query, variables }: { query: DocumentNode; variables: Record<string, unknown> }) =>
      toSource(answer(query, variables)),
    executeMutation: ({ query, variables }: { query: DocumentNode; variables: Record<string, unknown> }) =>
      toSource(answer(query, variables)),
    executeSubscription: ({ query, variables }: { query: DocumentNode; variables: Record<string, unknown> }) =>
      toSource(answer(query, variables)),
  };
  // useClient().query/mutation(...).toPromise() build on executeRequestOperation in urql; mirror it.
  const promised = (query: DocumentNode, variables: Record<string, unknown>) => ({
    toPromise: () => Promise.resolve(answer(query, variables)),
  });
  const full = { ...client, query: promised, mutation: promised } as unknown as Client;
  return { client: full, calls };
}

export const OWNER_PERMISSIONS = [
  "agent.manage",
  "chat.use",
  "comment.post",
  "comment.react",
  "inbox.act",
  "machine.manage",
  "runtime.manage",
  "run.control",
  "task.assign",
  "task.create",
  "task.edit",
];

export function workspace(permissions: string[] = OWNER_PERMISSIONS): SessionWorkspace {
  return { id: "w1", name: "Acme", slug: "acme", viewerPermissions: permissions };
}

/** Renders `ui` inside a router at `path` (matching `pattern`), a workspace and a mock client. */
export function renderWith(
  ui: ReactElement,
  { client, permissions, path = "/", pattern = "*" }: { client: Client; permissions?: string[]; path?: string; pattern?: string },
) {
  return render(
    <Provider value={client}>
      <MemoryRouter initialEntries={[path]}>
        <WorkspaceProvider workspace={workspace(permissions)}>
          <Routes>
            <Route path={pattern} element={ui} />
          </Routes>
        </WorkspaceProvider>
      </MemoryRouter>
    </Provider>,
  );
}
