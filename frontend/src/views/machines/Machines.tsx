import { useEffect, useState } from "react";
import { useLocation } from "react-router";
import { useMutation, useQuery, useSubscription } from "urql";
import type { MachineFieldsFragment } from "../../gql/graphql";
import { Can, useWorkspace } from "../../app/workspace";
import { EmptyState } from "../../components/EmptyState";
import { ErrorMessage } from "../../components/ErrorMessage";
import { Loading } from "../../components/Loading";
import { formatAgo, formatTime } from "../../lib/format";
import {
  MachinesChangedDocument,
  MachinesDocument,
  RemoveMachineDocument,
  RequestMachineUpdateDocument,
  SetRuntimeEnabledDocument,
} from "./queries";
import { canRequestUpdate, updateBadge } from "./updateStatus";

type Machine = MachineFieldsFragment;
type Runtime = Machine["runtimes"][number];

/** Machines in the workspace: online state, CLI version and updates, runtimes, execution root. */
export function Machines() {
  const { workspace } = useWorkspace();
  const [{ data, fetching, error }, refetch] = useQuery({
    query: MachinesDocument,
    variables: { workspaceId: workspace.id },
  });
  const reload = () => refetch({ requestPolicy: "network-only" });
  // Changes (heartbeats bringing runtimes, updates, removals) arrive live; going offline is the
  // absence of heartbeats, so a slow poll also re-reads the 30 s freshness rule.
  const [live] = useSubscription({ query: MachinesChangedDocument, variables: { workspaceId: workspace.id } });
  useEffect(() => {
    if (live.data) reload();
  }, [live.data]);
  useEffect(() => {
    const timer = setInterval(() => refetch({ requestPolicy: "network-only" }), 10_000);
    return () => clearInterval(timer);
  }, [refetch]);

  // An inbox link to one machine (#machine-<id>): bring it into view once the list is there.
  const { hash } = useLocation();
  const loaded = Boolean(data);
  useEffect(() => {
    if (!loaded || !hash.startsWith("#machine-")) return;
    document.getElementById(hash.slice(1))?.scrollIntoView?.({ block: "start" });
  }, [loaded, hash]);

  if (fetching && !data) return <Loading label="Loading machines…" />;
  const machines = (data?.machines.edges ?? []).map((e) => e.node);
  return (
    <section className="page" aria-labelledby="machines-title">
      <div className="page__header">
        <h1 id="machines-title">Machines</h1>
      </div>
      {error && <ErrorMessage error={error} onRetry={reload} />}
      {machines.length === 0 && !error ? (
        <EmptyState title="No machines yet">
          Run <code>tama setup</code> on a computer to connect it to this workspace.
        </EmptyState>
      ) : (
        <ul className="list">
          {machines.map((machine) => (
            <MachineCard key={machine.id} machine={machine} onChanged={reload} />
          ))}
        </ul>
      )}
    </section>
  );
}

function MachineCard({ machine, onChanged }: { machine: Machine; onChanged: () => void }) {
  const [update, requestUpdate] = useMutation(RequestMachineUpdateDocument);
  const [removal, remove] = useMutation(RemoveMachineDocument);
  const [confirming, setConfirming] = useState(false);
  const badge = updateBadge(machine.updateStatus);
  return (
    <li id={`machine-${machine.id}`} className="panel machine" data-machine-id={machine.id} aria-label={`Machine ${machine.name}`}>
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
          {machine.cliVersion || "unknown"}
          {machine.latestCliVersion && machine.latestCliVersion !== machine.cliVersion && (
            <span className="muted"> (latest {machine.latestCliVersion})</span>
          )}{" "}
          {badge && (
            <span className={`badge badge--${badge.tone}`} data-testid="update-badge">
              {badge.label}
            </span>
          )}
          {machine.updateDetail && <div className="muted">{machine.updateDetail}</div>}
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
            <RuntimeRow key={runtime.id} runtime={runtime} onChanged={onChanged} />
          ))}
        </ul>
      )}
      {(update.error || removal.error) && <ErrorMessage error={update.error ?? removal.error} compact />}
      <Can permission="machine.manage">
        <div className="form__actions">
          {canRequestUpdate(machine.updateStatus) && (
            <button
              type="button"
              className="button"
              disabled={update.fetching}
              onClick={async () => {
                const result = await requestUpdate({ machineId: machine.id });
                if (!result.error) onChanged();
              }}
            >
              {update.fetching ? "Queueing update…" : "Update now"}
            </button>
          )}
          {confirming ? (
            <>
              <span>Remove {machine.name} and its runtimes?</span>
              <button type="button" className="button" onClick={() => setConfirming(false)}>
                Keep
              </button>
              <button
                type="button"
                className="button button--danger"
                disabled={removal.fetching}
                onClick={async () => {
                  const result = await remove({ machineId: machine.id });
                  if (!result.error) onChanged();
                }}
              >
                {removal.fetching ? "Removing…" : "Remove machine"}
              </button>
            </>
          ) : (
            <button type="button" className="button button--danger" onClick={() => setConfirming(true)}>
              Remove…
            </button>
          )}
        </div>
      </Can>
    </li>
  );
}

function RuntimeRow({ runtime, onChanged }: { runtime: Runtime; onChanged: () => void }) {
  const { can } = useWorkspace();
  const [{ fetching, error }, setEnabled] = useMutation(SetRuntimeEnabledDocument);
  // Flip at once (the switch answers the click); fall back to the server's value on an error.
  const [pending, setPending] = useState<boolean | null>(null);
  const checked = pending ?? runtime.enabled;
  useEffect(() => {
    if (pending !== null && pending === runtime.enabled) setPending(null);
  }, [pending, runtime.enabled]);
  return (
    <li className="runtime" data-runtime-id={runtime.id}>
      <div className="page__header">
        <strong>{runtime.name}</strong>
        <span className="muted">
          {runtime.version} · {runtime.provider}
        </span>
        <span className={runtime.ready ? "badge badge--ok" : "badge"} data-testid="runtime-ready">
          {runtime.ready ? "Ready" : runtime.available ? "Not ready" : "Missing"}
        </span>
        {can("runtime.manage") ? (
          <label className="switch">
            <input
              type="checkbox"
              role="switch"
              checked={checked}
              disabled={fetching}
              onChange={async (e) => {
                const enabled = e.target.checked;
                setPending(enabled);
                const result = await setEnabled({ runtimeId: runtime.id, enabled });
                if (result.error) setPending(null);
                else onChanged();
              }}
            />
            Enabled for agents
          </label>
        ) : (
          <span className="muted" data-testid="runtime-enabled">
            {runtime.enabled ? "Enabled for agents" : "Not enabled for agents"}
          </span>
        )}
      </div>
      <code className="muted">{runtime.path}</code>
      {error && <ErrorMessage error={error} compact />}
    </li>
  );
}
