import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { CombinedError } from "@urql/core";
import { describe, expect, it } from "vitest";
import { Inbox } from "../views/inbox/Inbox";
import { Machines } from "../views/machines/Machines";
import { runtimeModels } from "../views/agents/Agents";
import { commentMarker, describeEvent, runEventStatus, threadEvents, type TimelineItem } from "../views/task/Timeline";
import { OWNER_PERMISSIONS, mockClient, renderWith } from "./render";

function machine(extra: Record<string, unknown> = {}) {
  return {
    id: "m1",
    name: "build-box",
    hostname: "build-box.local",
    os: "linux",
    online: true,
    lastHeartbeatAt: new Date().toISOString(),
    cliVersion: "0.1.0",
    updateStatus: "OUTDATED",
    updateDetail: null,
    latestCliVersion: "0.2.0",
    executionRoot: "/home/me/tama-work",
    capacity: 4,
    activeRuns: 1,
    runtimes: [
      { id: "r1", name: "claude", provider: "anthropic", version: "2.1.329", path: "/bin/claude", available: true, enabled: false, ready: false },
    ],
    ...extra,
  };
}

const machinesAnswer = (m = machine()) => ({ data: { machines: { edges: [{ node: m }] } } });

describe("machines", () => {
  it("shows online state, version with an update badge, runtimes and the execution root", async () => {
    const { client } = mockClient(({ name }) => (name === "Machines" ? machinesAnswer() : undefined));
    renderWith(<Machines />, { client });
    const card = await screen.findByRole("listitem", { name: "Machine build-box" });
    expect(within(card).getByTestId("machine-status")).toHaveTextContent("Online");
    expect(within(card).getByTestId("update-badge")).toHaveTextContent("Update available");
    expect(card).toHaveTextContent("latest 0.2.0");
    expect(card).toHaveTextContent("/home/me/tama-work");
    expect(card).toHaveTextContent("1 running of 4");
    expect(within(card).getByRole("switch", { name: "Enabled for agents" })).not.toBeChecked();
  });

  it("an owner toggles a runtime and queues an update", async () => {
    const { client, calls } = mockClient(({ name, variables }) => {
      if (name === "Machines") return machinesAnswer();
      if (name === "SetRuntimeEnabled") return { data: { setRuntimeEnabled: { id: "r1", enabled: variables.enabled, ready: true } } };
      if (name === "RequestMachineUpdate") return { data: { requestMachineUpdate: machine({ updateStatus: "QUEUED" }) } };
      return undefined;
    });
    renderWith(<Machines />, { client });
    const toggle = await screen.findByRole("switch", { name: "Enabled for agents" });
    await userEvent.click(toggle);
    expect(toggle).toBeChecked();
    await userEvent.click(screen.getByRole("button", { name: "Update now" }));
    await waitFor(() => expect(calls.map((c) => c.name)).toContain("RequestMachineUpdate"));
    expect(calls.find((c) => c.name === "SetRuntimeEnabled")!.variables).toEqual({ runtimeId: "r1", enabled: true });
    expect(calls.find((c) => c.name === "RequestMachineUpdate")!.variables).toEqual({ machineId: "m1" });
  });

  it("a member sees runtimes but no switch, update or remove (hidden, not disabled)", async () => {
    const { client } = mockClient(({ name }) => (name === "Machines" ? machinesAnswer() : undefined));
    const member = OWNER_PERMISSIONS.filter((p) => !["runtime.manage", "machine.manage"].includes(p));
    renderWith(<Machines />, { client, permissions: member });
    const card = await screen.findByRole("listitem", { name: "Machine build-box" });
    expect(within(card).queryByRole("switch")).not.toBeInTheDocument();
    expect(within(card).getByTestId("runtime-enabled")).toHaveTextContent("Not enabled for agents");
    expect(within(card).queryByRole("button", { name: "Update now" })).not.toBeInTheDocument();
    expect(within(card).queryByRole("button", { name: /Remove/ })).not.toBeInTheDocument();
  });
});

describe("inbox", () => {
  it("an update nudge's Update now queues the machine's update", async () => {
    const item = {
      id: "i1", kind: "UPDATE_NUDGE", status: "OPEN", title: "build-box runs tama 0.1.0; 0.2.0 is out",
      body: "", createdAt: "2026-01-01T00:00:00Z", task: null, agent: null, data: { machineId: "m1" },
    };
    const { client, calls } = mockClient(({ name }) => {
      if (name === "Inbox") return { data: { inbox: { edges: [{ node: item }] } } };
      if (name === "RequestMachineUpdate") return { data: { requestMachineUpdate: machine({ updateStatus: "QUEUED" }) } };
      return undefined;
    });
    renderWith(<Inbox />, { client });
    await userEvent.click(await screen.findByRole("button", { name: "Update now" }));
    await waitFor(() => expect(calls.find((c) => c.name === "RequestMachineUpdate")?.variables).toEqual({ machineId: "m1" }));
  });

  const question = {
    id: "i2", kind: "QUESTION", status: "OPEN", title: "Which branch?", body: "main or dev?", readAt: null,
    createdAt: "2026-01-01T00:00:00Z", task: { id: "t1", number: 4, title: "Deploy" }, agent: { id: "a1", name: "Builder" }, data: { commentId: "c1" },
  };

  it("answers a question with answerInboxItem and drops it from the list", async () => {
    let open = true;
    const { client, calls } = mockClient(({ name }) => {
      if (name === "Inbox") return { data: { inbox: { edges: open ? [{ node: question }] : [] } } };
      if (name === "AnswerInboxItem") {
        open = false;
        return { data: { answerInboxItem: { id: "i2", status: "RESOLVED" } } };
      }
      return undefined;
    });
    renderWith(<Inbox />, { client });
    await userEvent.type(await screen.findByLabelText("Your answer (to Builder)"), "main");
    await userEvent.click(screen.getByRole("button", { name: "Answer" }));
    await waitFor(() => expect(calls.find((c) => c.name === "AnswerInboxItem")?.variables).toEqual({ id: "i2", answer: "main" }));
    expect(calls.map((c) => c.name)).not.toContain("PostComment");
    expect(await screen.findByText("Nothing needs you right now")).toBeInTheDocument();
  });

  it("decides an approval with a note; a refused decision shows the server's words and keeps the item", async () => {
    const approval = { ...question, id: "i3", kind: "APPROVAL", title: "Approval requested: deploy to prod" };
    const { client, calls } = mockClient(({ name }) => {
      if (name === "Inbox") return { data: { inbox: { edges: [{ node: approval }] } } };
      if (name === "DecideApproval") {
        return { error: new CombinedError({ graphQLErrors: [{ message: "this item is already resolved", extensions: { code: "CONFLICT" } }] }) };
      }
      return undefined;
    });
    renderWith(<Inbox />, { client });
    await userEvent.type(await screen.findByLabelText("Note (optional) to Builder"), "after 6pm");
    await userEvent.click(screen.getByRole("button", { name: "Approve" }));
    await waitFor(() => expect(calls.find((c) => c.name === "DecideApproval")?.variables).toEqual({ id: "i3", approve: true, note: "after 6pm" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("this item is already resolved");
    expect(screen.getByRole("listitem", { name: "Approval requested: deploy to prod" })).toBeInTheDocument();
  });

  it("marks items read and resolved with updateInboxItem; a stale runtime links to its machine", async () => {
    const stale = {
      id: "i4", kind: "RUNTIME_STALE", status: "OPEN", title: "claude on build-box is not ready", body: "", readAt: null,
      createdAt: "2026-01-01T00:00:00Z", task: null, agent: null, data: { machineId: "m1", runtimeId: "r1" },
    };
    const { client, calls } = mockClient(({ name, variables }) => {
      if (name === "Inbox") return { data: { inbox: { edges: [{ node: stale }] } } };
      if (name === "UpdateInboxItem") return { data: { updateInboxItem: { id: "i4", status: variables.resolved ? "RESOLVED" : "OPEN", readAt: "2026-01-01T00:00:00Z" } } };
      return undefined;
    });
    renderWith(<Inbox />, { client });
    const link = await screen.findByRole("link", { name: "Open the machine" });
    expect(link).toHaveAttribute("href", "/w/w1/machines#machine-m1");
    await userEvent.click(screen.getByRole("button", { name: "Mark read" }));
    await waitFor(() => expect(calls.find((c) => c.name === "UpdateInboxItem")?.variables).toEqual({ id: "i4", read: true }));
    await userEvent.click(screen.getByRole("button", { name: "Dismiss" }));
    await waitFor(() => expect(calls.filter((c) => c.name === "UpdateInboxItem").at(-1)?.variables).toEqual({ id: "i4", resolved: true }));
  });

  it("a viewer sees the items but no actions", async () => {
    const { client } = mockClient(({ name }) => (name === "Inbox" ? { data: { inbox: { edges: [{ node: question }] } } } : undefined));
    renderWith(<Inbox />, { client, permissions: [] });
    await screen.findByRole("listitem", { name: "Which branch?" });
    expect(screen.queryByRole("button")).not.toBeInTheDocument();
  });
});

describe("timeline and agents", () => {
  const base = { createdAt: "2026-01-01T00:00:00Z", actor: { __typename: "User" as const, id: "u1", name: "Ada", email: "a@x" }, run: null, comment: null };
  it("describes status changes, assignments, refusals and no-ops in words", () => {
    const names = new Map([["a1", "Builder"]]);
    const event = (kind: string, data: unknown) => ({ ...base, id: kind, kind, data }) as unknown as TimelineItem;
    expect(describeEvent(event("STATUS_CHANGED", { from: "todo", to: "in_progress" }))).toBe("Ada moved it from To do to In progress");
    expect(describeEvent(event("ASSIGNED", { to_agent: "a1" }), names)).toBe("Ada assigned it to Builder (agent)");
    expect(describeEvent(event("REFUSAL", { reason: "out of scope" }))).toBe("Ada refused: out of scope");
    expect(describeEvent(event("NOOP", { reason: "already done", recorded_by: "agent" }))).toBe("Ada did nothing: already done");
    expect(describeEvent(event("NOOP", { reason: "the turn changed nothing", recorded_by: "loop" }))).toBe(
      "Ada did nothing: the turn changed nothing (recorded by the loop)",
    );
    expect(describeEvent(event("SUMMARY", { summary: "Fixed it." }))).toBe("Ada wrote the summary");
  });

  it("describes a run's steps from what each event recorded", () => {
    const run = { id: "r1", status: "SUCCEEDED", failureCode: null, agent: { id: "a1", name: "Builder" } };
    const step = (data: unknown) => ({ ...base, id: "x", kind: "RUN", data, run }) as unknown as TimelineItem;
    expect(describeEvent(step({ status: "queued", attempt: 1, trigger: "assignment" }))).toBe("Builder was asked to work (assignment): run queued");
    expect(describeEvent(step({ status: "running", attempt: 1 }))).toBe("Builder started working");
    expect(describeEvent(step({ status: "retrying", attempt: 2, failure_code: "lease_lost" }))).toBe(
      "Builder's run is retried (attempt 2) after the machine stopped reporting while it ran (lease_lost)",
    );
    expect(describeEvent(step({ status: "failed", attempt: 2, failure_code: "timeout" }))).toBe("Builder's run failed: it ran too long or went quiet (timeout)");
    expect(describeEvent(step({ status: "succeeded", attempt: 1, cost_usd: 0.25 }))).toBe("Builder's run succeeded · $0.2500");
    expect(runEventStatus(step({ status: "failed" }))).toBe("FAILED");
    expect(runEventStatus(step({ status: "retrying" }))).toBe("QUEUED");
  });

  it("recognises blocked, question and approval comments", () => {
    expect(commentMarker("**Blocked:** no access to the DB")).toEqual({ label: "Blocked", text: "no access to the DB" });
    expect(commentMarker("**Question:** which one?")).toEqual({ label: "Question", text: "which one?" });
    expect(commentMarker("plain **Blocked:** text")).toEqual({ label: null, text: "plain **Blocked:** text" });
  });

  it("puts replies under their thread's root comment", () => {
    const comment = (id: string, parentId: string | null) => ({
      __typename: "Comment", id, body: id, createdAt: "", parentId, replyCount: 0, author: null, reactions: [],
    });
    const events = [
      { ...base, id: "e1", kind: "COMMENTED", data: {}, comment: comment("c1", null) },
      { ...base, id: "e2", kind: "STATUS_CHANGED", data: {} },
      { ...base, id: "e3", kind: "COMMENTED", data: {}, comment: comment("c2", "c1") },
    ] as unknown as TimelineItem[];
    const { top, replies } = threadEvents(events);
    expect(top.map((e) => e.id)).toEqual(["e1", "e2"]);
    expect(replies.get("c1")?.map((c) => c.id)).toEqual(["c2"]);
  });

  it("reads the models and reasoning levels a runtime reported", () => {
    const capabilities = { models: [{ id: "opus", display_name: "Opus", reasoning_levels: ["low", "high"] }], reason: null };
    expect(runtimeModels(capabilities)).toEqual([{ value: "opus", levels: ["low", "high"] }]);
    expect(runtimeModels({})).toEqual([]);
  });
});
