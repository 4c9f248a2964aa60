import { act, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { CombinedError } from "@urql/core";
import { describe, expect, it, vi } from "vitest";
import type { RunFieldsFragment } from "../gql/graphql";
import { Runs, waitingText } from "../views/task/Runs";
import { groupEntries, flattenChunks, Transcript } from "../views/task/Transcript";
import { runDurationMs } from "../views/task/runMeta";
import { OWNER_PERMISSIONS, mockClient, renderWith } from "./render";

function run(extra: Partial<RunFieldsFragment> = {}): RunFieldsFragment {
  return {
    __typename: "Run",
    id: "r1",
    status: "QUEUED",
    failureCode: null,
    error: null,
    attempt: 1,
    maxAttempts: 2,
    costUsd: null,
    durationMs: null,
    queueReason: "Builder is at 1/1 runs",
    queuePosition: 2,
    diffStat: null,
    cancelRequested: false,
    startedAt: null,
    finishedAt: null,
    createdAt: "2026-01-01T00:00:00Z",
    triggerKind: "ASSIGNMENT",
    agent: { __typename: "Agent", id: "a1", name: "Builder" },
    history: [],
    ...extra,
  } as RunFieldsFragment;
}

describe("runs", () => {
  it("a waiting run says why and where it is in line; the owner may cancel it", async () => {
    const onChanged = vi.fn();
    const { client, calls } = mockClient(({ name }) =>
      name === "CancelRun" ? { data: { cancelRun: run({ status: "CANCELLED" }) } } : undefined,
    );
    renderWith(<Runs runs={[run()]} selected={null} onSelect={() => {}} onChanged={onChanged} />, { client });
    const item = screen.getByRole("listitem", { name: "Run by Builder, Queued" });
    expect(within(item).getByTestId("run-waiting")).toHaveTextContent("Waiting: Builder is at 1/1 runs · #2 in line");
    expect(within(item).getByTestId("run-attempt")).toHaveTextContent("1 of 2");
    expect(within(item).queryByRole("button", { name: "Retry" })).not.toBeInTheDocument();
    await userEvent.click(within(item).getByRole("button", { name: "Cancel run" }));
    await waitFor(() => expect(onChanged).toHaveBeenCalled());
    expect(calls.find((c) => c.name === "CancelRun")!.variables).toEqual({ id: "r1" });
  });

  it("a failed run shows its failure in words and offers Retry, which selects the new run", async () => {
    const onSelect = vi.fn();
    const failed = run({ status: "FAILED", failureCode: "lease_lost", error: "machine went quiet", attempt: 2, queueReason: null, queuePosition: null });
    const { client, calls } = mockClient(({ name }) => (name === "RetryRun" ? { data: { retryRun: run({ id: "r2" }) } } : undefined));
    renderWith(<Runs runs={[failed]} selected="r1" onSelect={onSelect} />, { client });
    expect(screen.getByTestId("run-failure")).toHaveTextContent("Failed: the machine stopped reporting while it ran (lease_lost)machine went quiet");
    expect(screen.queryByRole("button", { name: "Cancel run" })).not.toBeInTheDocument();
    await userEvent.click(screen.getByRole("button", { name: "Retry" }));
    await waitFor(() => expect(onSelect).toHaveBeenCalledWith("r2"));
    expect(calls.find((c) => c.name === "RetryRun")!.variables).toEqual({ id: "r1" });
  });

  it("a refused cancel shows the server's reason and keeps the run as it was", async () => {
    const { client } = mockClient(({ name }) =>
      name === "CancelRun"
        ? { error: new CombinedError({ graphQLErrors: [{ message: "the run already succeeded", extensions: { code: "CONFLICT" } }] }) }
        : undefined,
    );
    renderWith(<Runs runs={[run({ status: "RUNNING", startedAt: new Date().toISOString() })]} selected={null} onSelect={() => {}} />, { client });
    await userEvent.click(screen.getByRole("button", { name: "Cancel run" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Changed meanwhile");
    expect(screen.getByRole("alert")).toHaveTextContent("the run already succeeded");
    expect(screen.getByTestId("run-status")).toHaveTextContent("Running");
  });

  it("hides cancel and retry without run.control (hidden, not disabled)", () => {
    const { client } = mockClient(() => undefined);
    const without = OWNER_PERMISSIONS.filter((p) => p !== "run.control");
    renderWith(
      <Runs runs={[run(), run({ id: "r2", status: "FAILED", createdAt: "2026-01-02T00:00:00Z" })]} selected={null} onSelect={() => {}} />,
      { client, permissions: without },
    );
    expect(screen.queryByRole("button", { name: "Cancel run" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Retry" })).not.toBeInTheDocument();
    expect(screen.getAllByRole("button", { name: /transcript/ })).toHaveLength(2);
  });

  it("follows runChanged: the status, attempt and cost change without a reload", async () => {
    let push: ((value: unknown) => void) | null = null;
    const { client, calls } = mockClient(({ name }) => (name === "RunChanged" ? new Promise((resolve) => (push = resolve)) : undefined));
    renderWith(<Runs runs={[run()]} selected={null} onSelect={() => {}} />, { client });
    await waitFor(() => expect(calls.find((c) => c.name === "RunChanged")?.variables).toEqual({ runId: "r1" }));
    const { agent, history, createdAt, triggerKind, ...live } = run();
    void [agent, history, createdAt, triggerKind];
    await act(async () =>
      push!({ data: { runChanged: { ...live, status: "SUCCEEDED", costUsd: 0.5, durationMs: 65_000, queueReason: null, queuePosition: null, diffStat: " a.py | 2 +-" } } }),
    );
    expect(screen.getByTestId("run-status")).toHaveTextContent("Succeeded");
    expect(screen.getByTestId("run-cost")).toHaveTextContent("$0.5000");
    expect(screen.getByTestId("run-duration")).toHaveTextContent("1 min 5 s");
    expect(screen.queryByTestId("run-waiting")).not.toBeInTheDocument();
    expect(screen.getByTestId("run-diffstat")).toHaveTextContent("a.py | 2 +-");
  });

  it("words the wait and measures a running run's duration so far", () => {
    expect(waitingText({ status: "QUEUED", queueReason: null, queuePosition: 1 })).toBe("next in line");
    expect(waitingText({ status: "DISPATCHED", queueReason: null, queuePosition: null })).toBe("waiting for the machine to pick it up");
    expect(waitingText({ status: "SUCCEEDED", queueReason: "x", queuePosition: 1 })).toBeNull();
    expect(runDurationMs({ durationMs: null, startedAt: "2026-01-01T00:00:00Z", finishedAt: null }, Date.parse("2026-01-01T00:00:42Z"))).toBe(42_000);
    expect(runDurationMs({ durationMs: 5, startedAt: null }, 0)).toBe(5);
  });
});

describe("transcript grouping", () => {
  it("puts each result under its call and marks a new attempt", () => {
    const entries = flattenChunks([
      { attempt: 1, seq: 1, events: [{ kind: "tool_call", call_id: "c1", name: "Bash", input: { command: "ls" } }] },
      { attempt: 1, seq: 2, events: [{ kind: "text", text: "hm" }, { kind: "tool_result", call_id: "c1", output: "a.txt" }] },
      { attempt: 2, seq: 1, events: [{ kind: "tool_result", call_id: "c1", output: "orphan" }] },
    ]);
    const items = groupEntries(entries);
    expect(items.map((i) => i.type)).toEqual(["tool", "event", "attempt", "event"]);
    const tool = items[0] as Extract<(typeof items)[number], { type: "tool" }>;
    expect(tool.result?.output).toBe("a.txt");
  });

  it("shows a tool call collapsed with its command; opening it shows the result", async () => {
    const { client } = mockClient(({ name }) => {
      if (name === "RunStatus") return { data: { run: run({ status: "SUCCEEDED", costUsd: 0.02, durationMs: 1500, queueReason: null }) } };
      if (name === "RunTranscriptLive") {
        return {
          data: {
            runTranscript: {
              attempt: 1,
              seq: 1,
              events: [
                { kind: "tool_call", call_id: "c1", name: "Bash", input: { command: 'tama tasks comment "hi"' } },
                { kind: "tool_result", call_id: "c1", output: "posted comment 7", is_error: false },
                { kind: "system", message: "permission denied: Write" },
              ],
            },
          },
        };
      }
      return undefined;
    });
    renderWith(<Transcript runId="r1" />, { client });
    const entry = await screen.findByTestId("tool-entry");
    expect(entry).toHaveTextContent('Tool call · Bash tama tasks comment "hi" done');
    expect(screen.getByText("posted comment 7")).not.toBeVisible();
    await userEvent.click(within(entry).getByText(/Tool call/));
    expect(screen.getByText("posted comment 7")).toBeVisible();
    expect(screen.getByText("permission denied: Write")).toBeInTheDocument();
    expect(screen.getByTestId("transcript-figures")).toHaveTextContent("Cost $0.0200 · Duration 1.5 s");
  });
});
