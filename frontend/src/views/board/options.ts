import type { BoardOptionsQuery } from "../../gql/graphql";

export interface AssignOptions {
  members: readonly { id: string; name: string; email: string }[];
  agents: readonly { id: string; name: string; handle: string }[];
  teams: readonly { id: string; name: string; handle: string }[];
  projects: readonly { id: string; name: string }[];
}

export const NO_OPTIONS: AssignOptions = { members: [], agents: [], teams: [], projects: [] };

/** Flattens the options query's connections into plain lists. */
export function toAssignOptions(data: BoardOptionsQuery | undefined): AssignOptions {
  if (!data) return NO_OPTIONS;
  return {
    members: data.members.edges.map((e) => e.node.user),
    agents: data.agents.edges.map((e) => e.node),
    teams: data.teams.edges.map((e) => e.node),
    projects: data.projects.edges.map((e) => e.node),
  };
}

/** Assignee select values carry their kind: "user:<id>" or "agent:<id>". */
export function assigneeValue(assignee: { __typename?: string; id: string } | null | undefined): string {
  if (!assignee) return "";
  return `${assignee.__typename === "Agent" ? "agent" : "user"}:${assignee.id}`;
}

export function parseAssignee(value: string): { userId: string | null; agentId: string | null } {
  const [kind, id] = value.split(":");
  if (!id) return { userId: null, agentId: null };
  return kind === "agent" ? { userId: null, agentId: id } : { userId: id, agentId: null };
}
