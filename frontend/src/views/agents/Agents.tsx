import { useEffect, useState, type FormEvent } from "react";
import { Link, useParams } from "react-router";
import { useMutation, useQuery } from "urql";
import { graphql } from "../../gql";
import type { AgentsQuery, AutonomyLevel } from "../../gql/graphql";
import { useWorkspace } from "../../app/workspace";
import { EmptyState } from "../../components/EmptyState";
import { ErrorMessage } from "../../components/ErrorMessage";
import { Loading } from "../../components/Loading";

const AgentsDocument = graphql(`
  query Agents($workspaceId: ID!) {
    agents(workspaceId: $workspaceId, first: 200) {
      edges {
        node {
        id
        name
        handle
        summary
        instructions
        model
        reasoningLevel
        concurrencyLimit
        autonomy
        memory
        defaultRuntime {
          id
          name
        }
        }
      }
    }
    machines(workspaceId: $workspaceId, first: 200) {
      edges {
        node {
          id
          name
          runtimes {
            id
            name
            enabled
            capabilities
          }
        }
      }
    }
  }
`);

const UpdateAgentDocument = graphql(`
  mutation UpdateAgent($id: ID!, $profile: AgentProfileInput!) {
    updateAgent(id: $id, profile: $profile) {
      id
      name
      instructions
      model
      reasoningLevel
      concurrencyLimit
      autonomy
      memory
      defaultRuntime {
        id
        name
      }
    }
  }
`);

type Agent = AgentsQuery["agents"]["edges"][number]["node"];
type RuntimeOption = { id: string; label: string; capabilities: unknown };

/** Models and reasoning levels a runtime reported (Claude: models[].supportedEffortLevels; Codex: catalog). */
export function runtimeModels(capabilities: unknown): { value: string; levels: string[] }[] {
  const models = (capabilities as { models?: unknown } | null)?.models;
  if (!Array.isArray(models)) return [];
  return models.flatMap((m) => {
    if (!m || typeof m !== "object") return [];
    const record = m as Record<string, unknown>;
    const value = String(record.value ?? record.slug ?? record.id ?? "");
    const levels = (record.reasoning_levels ?? record.reasoningLevels ?? record.supportedEffortLevels ?? record.supported_reasoning_levels ?? []) as unknown[];
    return value ? [{ value, levels: levels.map((l) => (typeof l === "object" && l ? String((l as Record<string, unknown>).effort ?? "") : String(l))).filter(Boolean) }] : [];
  });
}

/** Agent profiles and memory; editing needs agent.manage, reading only membership. */
export function Agents() {
  const { workspace } = useWorkspace();
  const { agentId } = useParams();
  const [{ data, fetching, error }, refetch] = useQuery({ query: AgentsDocument, variables: { workspaceId: workspace.id } });
  if (fetching && !data) return <Loading label="Loading agents…" />;
  const agents = (data?.agents.edges ?? []).map((e) => e.node);
  const runtimes: RuntimeOption[] = (data?.machines.edges ?? []).map((e) => e.node).flatMap((m) =>
    m.runtimes.map((r) => ({ id: r.id, label: `${r.name} on ${m.name}${r.enabled ? "" : " (not enabled)"}`, capabilities: r.capabilities })),
  );
  const selected = agents.find((a) => a.id === agentId) ?? agents[0];
  return (
    <section className="page page--wide" aria-labelledby="agents-title">
      <div className="page__header">
        <h1 id="agents-title">Agents</h1>
      </div>
      {error && <ErrorMessage error={error} onRetry={() => refetch({ requestPolicy: "network-only" })} />}
      {agents.length === 0 && !error ? (
        <EmptyState title="No agents in this workspace yet" />
      ) : (
        <div className="split split--nav">
          <nav aria-label="Agents">
            <ul className="list">
              {agents.map((a) => (
                <li key={a.id}>
                  <Link className="nav__link" aria-current={a.id === selected?.id ? "page" : undefined} to={`/w/${workspace.id}/agents/${a.id}`}>
                    {a.name} <span className="muted">@{a.handle}</span>
                  </Link>
                </li>
              ))}
            </ul>
          </nav>
          {selected && <AgentProfile key={selected.id} agent={selected} runtimes={runtimes} />}
        </div>
      )}
    </section>
  );
}

function AgentProfile({ agent, runtimes }: { agent: Agent; runtimes: RuntimeOption[] }) {
  const { can } = useWorkspace();
  const editable = can("agent.manage");
  const [form, setForm] = useState(() => fromAgent(agent));
  const [saved, setSaved] = useState(false);
  const [{ fetching, error }, update] = useMutation(UpdateAgentDocument);
  useEffect(() => setForm(fromAgent(agent)), [agent]);
  const runtime = runtimes.find((r) => r.id === form.defaultRuntimeId);
  const models = runtimeModels(runtime?.capabilities);
  const levels = models.find((m) => m.value === form.model)?.levels ?? [];

  function set<K extends keyof typeof form>(key: K, value: (typeof form)[K]) {
    setForm((f) => ({ ...f, [key]: value }));
    setSaved(false);
  }

  async function submit(event: FormEvent) {
    event.preventDefault();
    const concurrency = Number(form.concurrencyLimit);
    if (!Number.isInteger(concurrency) || concurrency < 1) return;
    const result = await update({
      id: agent.id,
      profile: {
        instructions: form.instructions,
        defaultRuntimeId: form.defaultRuntimeId || null,
        clearDefaultRuntime: !form.defaultRuntimeId,
        model: form.model || null,
        reasoningLevel: form.reasoningLevel || null,
        concurrencyLimit: concurrency,
        autonomy: form.autonomy,
        memory: form.memory,
      },
    });
    if (!result.error) setSaved(true);
  }

  const concurrencyInvalid = !Number.isInteger(Number(form.concurrencyLimit)) || Number(form.concurrencyLimit) < 1;
  return (
    <form className="panel form" onSubmit={submit} aria-label={`Profile of ${agent.name}`}>
      <h2>
        {agent.name} <span className="muted">@{agent.handle}</span>
      </h2>
      {agent.summary && <p>{agent.summary}</p>}
      <fieldset disabled={!editable} className="plain">
        <label className="field">
          <span>Instructions</span>
          <textarea rows={6} value={form.instructions} onChange={(e) => set("instructions", e.target.value)} />
        </label>
        <div className="form__row">
          <label className="field">
            <span>Default runtime</span>
            <select value={form.defaultRuntimeId} onChange={(e) => set("defaultRuntimeId", e.target.value)}>
              <option value="">Any ready runtime</option>
              {runtimes.map((r) => (
                <option key={r.id} value={r.id}>
                  {r.label}
                </option>
              ))}
            </select>
          </label>
          <label className="field">
            <span>Model</span>
            {models.length > 0 ? (
              <select value={form.model} onChange={(e) => set("model", e.target.value)}>
                <option value="">Runtime default</option>
                {models.map((m) => (
                  <option key={m.value} value={m.value}>
                    {m.value}
                  </option>
                ))}
              </select>
            ) : (
              <input value={form.model} onChange={(e) => set("model", e.target.value)} placeholder="Runtime default" />
            )}
          </label>
          <label className="field">
            <span>Reasoning level</span>
            {levels.length > 0 ? (
              <select value={form.reasoningLevel} onChange={(e) => set("reasoningLevel", e.target.value)}>
                <option value="">Default</option>
                {levels.map((l) => (
                  <option key={l} value={l}>
                    {l}
                  </option>
                ))}
              </select>
            ) : (
              <input value={form.reasoningLevel} onChange={(e) => set("reasoningLevel", e.target.value)} placeholder="Default" />
            )}
          </label>
        </div>
        <div className="form__row">
          <label className="field">
            <span>Concurrency (runs at once)</span>
            <input
              type="number"
              min={1}
              max={32}
              value={form.concurrencyLimit}
              aria-invalid={concurrencyInvalid}
              onChange={(e) => set("concurrencyLimit", e.target.value)}
            />
          </label>
          <label className="field">
            <span>Autonomy</span>
            <select value={form.autonomy} onChange={(e) => set("autonomy", e.target.value as AutonomyLevel)}>
              <option value="LOW">Low: asks before acting</option>
              <option value="MEDIUM">Medium</option>
              <option value="HIGH">High: acts on its own</option>
            </select>
          </label>
        </div>
        <label className="field">
          <span>Memory</span>
          <textarea rows={6} value={form.memory} onChange={(e) => set("memory", e.target.value)} />
        </label>
      </fieldset>
      {concurrencyInvalid && (
        <p className="error error--compact" role="alert">
          Concurrency must be a whole number of at least 1.
        </p>
      )}
      {error && <ErrorMessage error={error} compact />}
      {editable && (
        <div className="form__actions">
          {saved && <span role="status">Saved</span>}
          <button type="submit" className="button button--primary" disabled={fetching || concurrencyInvalid}>
            {fetching ? "Saving…" : "Save profile"}
          </button>
        </div>
      )}
    </form>
  );
}

function fromAgent(agent: Agent) {
  return {
    instructions: agent.instructions,
    defaultRuntimeId: agent.defaultRuntime?.id ?? "",
    model: agent.model ?? "",
    reasoningLevel: agent.reasoningLevel ?? "",
    concurrencyLimit: String(agent.concurrencyLimit),
    autonomy: agent.autonomy,
    memory: agent.memory,
  };
}
