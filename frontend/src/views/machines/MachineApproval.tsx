import { Link, useSearchParams } from "react-router";
import { EmptyState } from "../../components/EmptyState";

/**
 * The page `tama setup` opens. The server's GraphQL API does not offer machine approval yet
 * (no approval query or mutation in schema.graphql), so this says so plainly instead of failing.
 */
export function MachineApproval() {
  const [params] = useSearchParams();
  const code = params.get("code");
  return (
    <main className="signin">
      <div className="signin__card">
        <h1 className="signin__title">Connect a machine</h1>
        {code && (
          <p>
            Code: <strong data-testid="approval-code">{code}</strong>
          </p>
        )}
        <EmptyState title="Machine approval is not available on this server yet">
          Ask the server's administrator to update it, then run <code>tama setup</code> again.{" "}
          <Link to="/">Go to Task Machine</Link>
        </EmptyState>
      </div>
    </main>
  );
}
