import { useEffect } from "react";
import { useQuery } from "urql";
import type { MachinesQuery } from "../../gql/graphql";
import { useWorkspace } from "../../app/workspace";
import { EmptyState } from "../../components/EmptyState";
import { ErrorMessage } from "../../components/ErrorMessage";
import { Loading } from "../../components/Loading";
import { formatAgo, formatTime } from "../../lib/format";
import { MachinesDocument } from "./queries";

type Machine = MachinesQuery["machines"]["edges"][number]["node"];
type Runtime = Machine["runtimes"][number];

/** Machines in the workspace: online state, CLI version and updates, runtimes, execution root. */
export function Machines() {
  const { workspace } = useWorkspace();
  const [{ data, fetching, error }, refetch] = useQuery({
    query: MachinesDocument,
    variables: { workspaceId: workspace.id },
  });
  // Online is a 30 s freshness rule: poll so the page follows heartbeats without a reload.
  useEffect(() => {
    const timer = setInterval(() => refetch({ requestPolicy: "network-only" }), 10_000);
    return () => clearInterval(timer);
  }, [refetch]);

  if (fetching && !data) return <Loading label="Loading machines…" />;
  const machines = (data?.machines.edges ?? []).map((e) => e.node);
  return (
    <section className="page" aria-labelledby="machines-title">
      <div className="page__header">
        <h1 id="machines-title">Machines</h1>
      </div>
      {error && <ErrorMessage error={error} onRetry={() => refetch({ requestPolicy: "network-only" })} />}
      {machines.length === 0 && !error ? (
        <EmptyState title="No machines yet">
          Run <code>tama setup</code> on a computer to connect it to this workspace.
        </EmptyState>
      ) : (
        <ul className="list">
          {machines.map((machine) => (
            <MachineCard key={machine.id} machine={machine} />
          ))}
        </ul>
      )}
    </section>
  );
}

function MachineCard({ machine }: { machine: Machine }) {
  return (
    <li className="panel" data-machine-id={machine.id} aria-label={`Machine ${machine.name}`}>
      <div className="page__header">
        <h2>
          <span className={machine.online ? "dot dot--online" : "dot"} aria-hidden="true" />
          {machine.name}
        </h2>
        <span className={machine.online ? "badge badge--ok" : "badge"} data-testid="machine-status">
          {machine.online ? "Online" : "Offline"}
        </span>
      </div>
      <dl className="kv">
        <dt>Last seen</dt>
        <dd title={formatTime(machine.lastHeartbeatAt)}>{formatAgo(machine.lastHeartbeatAt)}</dd>
        <dt>Host</dt>
        <dd>
          {machine.hostname} {machine.os && `(${machine.os})`}
        </dd>
        <dt>CLI version</dt>
        <dd>
          {machine.cliVersion || "unknown"}{" "}
          {machine.updateStatus && <span className="badge badge--warn">Update {machine.updateStatus}</span>}
        </dd>
        <dt>Runs</dt>
        <dd>
          {machine.activeRuns} running of {machine.capacity}
        </dd>
        <dt>Execution root</dt>
        <dd>
          <code>{machine.executionRoot || "not reported"}</code>
        </dd>
      </dl>
      <h3>Runtimes</h3>
      {machine.runtimes.length === 0 ? (
        <p className="muted">No coding tools reported yet.</p>
      ) : (
        <ul className="list">
          {machine.runtimes.map((runtime) => (
            <RuntimeRow key={runtime.id} runtime={runtime} />
          ))}
        </ul>
      )}
    </li>
  );
}

function RuntimeRow({ runtime }: { runtime: Runtime }) {
  return (
    <li className="runtime" data-runtime-id={runtime.id}>
      <div className="page__header">
        <strong>{runtime.name}</strong>
        <span className="muted">
          {runtime.version} · {runtime.provider}
        </span>
        <span className={runtime.ready ? "badge badge--ok" : "badge"}>
          {runtime.ready ? "Ready" : runtime.available ? "Not ready" : "Missing"}
        </span>
        <span className="muted" data-testid="runtime-enabled">
          {runtime.enabled ? "Enabled for agents" : "Not enabled for agents"}
        </span>
      </div>
      <code className="muted">{runtime.path}</code>
    </li>
  );
}
