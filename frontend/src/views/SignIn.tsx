import { useState, type FormEvent } from "react";
import { useMutation } from "urql";
import { graphql } from "../gql";
import { ErrorMessage } from "../components/ErrorMessage";

const RequestMagicLinkDocument = graphql(`
  mutation RequestMagicLink($email: String!) {
    requestMagicLink(email: $email)
  }
`);

/** Sign-in with a magic link: the user types an address, the server emails a one-time link. */
export function SignIn() {
  const [email, setEmail] = useState("");
  const [sentTo, setSentTo] = useState<string | null>(null);
  const [{ fetching, error }, request] = useMutation(RequestMagicLinkDocument);

  async function submit(event: FormEvent) {
    event.preventDefault();
    const address = email.trim();
    if (!address) return;
    const result = await request({ email: address });
    if (!result.error) setSentTo(address);
  }

  return (
    <main className="signin">
      <div className="signin__card">
        <h1 className="signin__title">Task Machine</h1>
        {sentTo ? (
          <div role="status">
            <h2>Check your email</h2>
            <p>
              We sent a sign-in link to <strong>{sentTo}</strong>. Open it in this browser to
              continue. It works once and expires soon.
            </p>
            <button type="button" className="button" onClick={() => setSentTo(null)}>
              Use another address
            </button>
          </div>
        ) : (
          <form onSubmit={submit} aria-label="Sign in">
            <h2>Sign in</h2>
            <label className="field">
              <span>Email</span>
              <input
                type="email"
                name="email"
                autoComplete="email"
                required
                autoFocus
                value={email}
                onChange={(e) => setEmail(e.target.value)}
              />
            </label>
            {error && <ErrorMessage error={error} compact />}
            <button type="submit" className="button button--primary" disabled={fetching}>
              {fetching ? "Sending…" : "Email me a sign-in link"}
            </button>
          </form>
        )}
      </div>
    </main>
  );
}
