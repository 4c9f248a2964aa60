import { useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router";
import { useMutation, useQuery } from "urql";
import { useSession } from "../../app/session";
import { EmptyState } from "../../components/EmptyState";
import { ErrorMessage } from "../../components/ErrorMessage";
import { Loading } from "../../components/Loading";
import { formatTime } from "../../lib/format";
import { ApproveMachineDocument, DenyMachineDocument, MachineApprovalDocument } from "./queries";

/** The page `tama setup` opens: approve (into chosen workspaces) or deny a machine. */
export function MachineApproval() {
  const [params] = useSearchParams();
  const code = params.get("code") ?? "";
  const { workspaces } = useSession();
  const manageable = workspaces.filter((w) => w.viewerPermissions.includes("machine.manage"));
  const [chosen, setChosen] = useState<string[]>(() => (manageable.length === 1 ? [manageable[0]!.id] : []));
  const [{ data, fetching, error }] = useQuery({
    query: MachineApprovalDocument,
    variables: { code },
    pause: !code,
  });
  const [approval, approve] = useMutation(ApproveMachineDocument);
  const [denial, deny] = useMutation(DenyMachineDocument);
  const [problem, setProblem] = useState<string | null>(null);

  const request = data?.machineApproval;
  const decided = approval.data?.approveMachine.status ?? denial.data?.denyMachine.status ?? request?.status;

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (chosen.length === 0) {
      setProblem("Choose at least one workspace for this machine.");
      return;
    }
    setProblem(null);
    await approve({ code, workspaceIds: chosen });
  }

  let body;
  if (!code) {
    body = (
      <EmptyState title="No approval code">
        Open the link that <code>tama setup</code> printed.
      </EmptyState>
    );
  } else if (fetching && !data) {
    body = <Loading label="Looking up the machine…" />;
  } else if (!request) {
    body = error ? <ErrorMessage error={error} /> : <EmptyState title="This approval request does not exist" />;
  } else if (decided && decided !== "PENDING") {
    body = (
      <div role="status" className="panel" data-testid="approval-result">
        <h2>
          {decided === "APPROVED" ? "Machine approved" : decided === "DENIED" ? "Machine denied" : "Request expired"}
        </h2>
        <p>
          {decided === "APPROVED"
            ? `${request.name} is connected. You can close this tab; tama setup continues on the machine.`
            : decided === "DENIED"
              ? `${request.name} was not connected.`
              : "Run tama setup again on the machine."}
        </p>
        <Link to="/">Go to Task Machine</Link>
      </div>
    );
  } else if (manageable.length === 0) {
    body = (
      <EmptyState title="You cannot connect machines">
        Your role does not allow managing machines in any workspace. Ask a workspace owner or admin.
      </EmptyState>
    );
  } else {
    body = (
      <form className="form" onSubmit={submit} aria-label="Approve machine">
        <p>
          A computer asks to join Task Machine. Check that the code matches what <code>tama setup</code> shows.
        </p>
        <dl className="kv panel">
          <dt>Code</dt>
          <dd>
            <strong data-testid="approval-code">{request.userCode}</strong>
          </dd>
          <dt>Name</dt>
          <dd>{request.name}</dd>
          <dt>Host</dt>
          <dd>
            {request.hostname} {request.os && `(${request.os})`}
          </dd>
          <dt>CLI version</dt>
          <dd>{request.cliVersion || "unknown"}</dd>
          <dt>Expires</dt>
          <dd>{formatTime(request.expiresAt)}</dd>
        </dl>
        <fieldset>
          <legend>Workspaces this machine may run work for</legend>
          {manageable.map((w) => (
            <label key={w.id} className="switch">
              <input
                type="checkbox"
                checked={chosen.includes(w.id)}
                onChange={(e) => setChosen((c) => (e.target.checked ? [...c, w.id] : c.filter((id) => id !== w.id)))}
              />
              {w.name}
            </label>
          ))}
        </fieldset>
        {problem && (
          <p className="error error--compact" role="alert">
            {problem}
          </p>
        )}
        {(approval.error || denial.error) && <ErrorMessage error={approval.error ?? denial.error} compact />}
        <div className="form__actions">
          <button type="button" className="button button--danger" disabled={denial.fetching} onClick={() => deny({ code })}>
            {denial.fetching ? "Denying…" : "Deny"}
          </button>
          <button type="submit" className="button button--primary" disabled={approval.fetching}>
            {approval.fetching ? "Approving…" : "Approve machine"}
          </button>
        </div>
      </form>
    );
  }
  return (
    <main className="signin">
      <div className="signin__card signin__card--wide">
        <h1 className="signin__title">Connect a machine</h1>
        {body}
      </div>
    </main>
  );
}
