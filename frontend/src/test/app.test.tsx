import { act, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { CombinedError } from "@urql/core";
import { MemoryRouter } from "react-router";
import { Provider } from "urql";
import { describe, expect, it } from "vitest";
import { SessionGate } from "../app/session";
import { ErrorBoundary } from "../components/ErrorBoundary";
import { readableError } from "../lib/errors";
import { Board } from "../views/board/Board";
import { Composer, mentionQuery } from "../views/task/Composer";
import { Transcript, flattenChunks } from "../views/task/Transcript";
import { mockClient, renderWith } from "./render";

const NO_OPTIONS = {
  data: {
    members: { edges: [{ node: { id: "m1", user: { id: "u1", name: "Ada", email: "ada@example.com" } } }] },
    agents: { edges: [{ node: { id: "a1", name: "Builder", handle: "builder" } }] },
    teams: { edges: [{ node: { id: "t1", name: "Docs team", handle: "docs" } }] },
    projects: { edges: [] },
  },
};

function task(n: number, status = "TODO", extra: Record<string, unknown> = {}) {
  return {
    __typename: "Task",
    id: `t${n}`,
    number: n,
    title: `Task ${n}`,
    description: "",
    status,
    priority: "NONE",
    updatedAt: "2026-01-01T00:00:00Z",
    project: null,
    assignee: null,
    ...extra,
  };
}

function page(tasks: unknown[], hasNextPage = false, totalCount = tasks.length) {
  return {
    data: {
      tasks: {
        totalCount,
        pageInfo: { hasNextPage, endCursor: hasNextPage ? "c1" : null },
        edges: tasks.map((node) => ({ node })),
      },
    },
  };
}

describe("readable errors", () => {
  it("names the API's error code and keeps its message", () => {
    const error = new CombinedError({
      graphQLErrors: [{ message: "title must not be empty", extensions: { code: "BAD_USER_INPUT" } }],
    });
    expect(readableError(error)).toEqual({
      code: "BAD_USER_INPUT",
      title: "Please check your input",
      message: "title must not be empty",
    });
  });

  it("explains a network failure instead of showing nothing", () => {
    const error = new CombinedError({ networkError: new Error("Failed to fetch") });
    expect(readableError(error).title).toBe("Cannot reach the server");
  });

  it("an error boundary shows a crashed view's error as text", () => {
    function Broken(): never {
      throw new Error("boom in the view");
    }
    const spy = vi.spyOn(console, "error").mockImplementation(() => {});
    render(
      <ErrorBoundary>
        <Broken />
      </ErrorBoundary>,
    );
    expect(screen.getByRole("alert")).toHaveTextContent("boom in the view");
    expect(screen.getByRole("button", { name: "Try again" })).toBeInTheDocument();
    spy.mockRestore();
  });
});

describe("sign-in", () => {
  it("shows the sign-in form when the API says UNAUTHENTICATED, and sends a magic link", async () => {
    const { client, calls } = mockClient(({ name }) => {
      if (name === "Session") {
        return { error: new CombinedError({ graphQLErrors: [{ message: "Sign in", extensions: { code: "UNAUTHENTICATED" } }] }) };
      }
      if (name === "RequestMagicLink") return { data: { requestMagicLink: true } };
      return undefined;
    });
    render(
      <Provider value={client}>
        <MemoryRouter>
          <SessionGate>
            <p>inside the app</p>
          </SessionGate>
        </MemoryRouter>
      </Provider>,
    );
    expect(screen.queryByText("inside the app")).not.toBeInTheDocument();
    await userEvent.type(screen.getByLabelText("Email"), "ada@example.com");
    await userEvent.click(screen.getByRole("button", { name: "Email me a sign-in link" }));
    expect(await screen.findByText("Check your email")).toBeInTheDocument();
    expect(calls.find((c) => c.name === "RequestMagicLink")?.variables).toEqual({ email: "ada@example.com" });
  });
});

describe("board", () => {
  it("shows tasks in their status columns and pages through all of them", async () => {
    const { client, calls } = mockClient(({ name, variables }) => {
      if (name === "BoardOptions") return NO_OPTIONS;
      if (name === "BoardTasks") {
        return variables.after ? page([task(3, "DONE")], false, 3) : page([task(1), task(2, "IN_PROGRESS")], true, 3);
      }
      return undefined;
    });
    renderWith(<Board />, { client });
    const done = await screen.findByRole("region", { name: "Done" });
    await within(done).findByText("Task 3");
    expect(within(screen.getByRole("region", { name: "To do" })).getByText("Task 1")).toBeInTheDocument();
    expect(within(screen.getByRole("region", { name: "In progress" })).getByText("Task 2")).toBeInTheDocument();
    expect(screen.getByTestId("task-count")).toHaveTextContent("3 of 3 tasks");
    const requests = calls.filter((c) => c.name === "BoardTasks");
    expect(requests.map((c) => c.variables.after)).toEqual([null, "c1"]);
    expect(requests.map((c) => c.variables.withCount)).toEqual([true, false]);
    // A small first page paints sooner; later pages take the server's maximum.
    expect(requests.map((c) => c.variables.first)).toEqual([100, 200]);
  });

  it("hides create and edit for a role without the permission", async () => {
    const { client } = mockClient(({ name }) =>
      name === "BoardOptions" ? NO_OPTIONS : name === "BoardTasks" ? page([task(1)]) : undefined,
    );
    renderWith(<Board />, { client, permissions: [] });
    await screen.findByText("Task 1");
    expect(screen.queryByRole("button", { name: "New task" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Edit task/ })).not.toBeInTheDocument();
  });

  it("moves a card when a live board event arrives", async () => {
    let push: ((value: unknown) => void) | null = null;
    const live = new Promise((resolve) => (push = resolve));
    const { client } = mockClient(({ name }) => {
      if (name === "BoardOptions") return NO_OPTIONS;
      if (name === "BoardTasks") return page([task(1)]);
      if (name === "BoardChanged") return live;
      return undefined;
    });
    renderWith(<Board />, { client });
    await within(await screen.findByRole("region", { name: "To do" })).findByText("Task 1");
    await act(async () => push!({ data: { boardChanged: { kind: "STATUS_CHANGED", task: task(1, "DONE") } } }));
    await waitFor(() => expect(within(screen.getByRole("region", { name: "Done" })).getByText("Task 1")).toBeInTheDocument());
    expect(within(screen.getByRole("region", { name: "To do" })).queryByText("Task 1")).not.toBeInTheDocument();
  });

  it("creates a task assigned to an agent", async () => {
    const { client, calls } = mockClient(({ name, variables }) => {
      if (name === "BoardOptions") return NO_OPTIONS;
      if (name === "BoardTasks") return page([]);
      if (name === "CreateTask") {
        const input = variables.input as Record<string, unknown>;
        return { data: { createTask: task(7, "TODO", { title: input.title, assignee: { __typename: "Agent", id: "a1", name: "Builder" } }) } };
      }
      return undefined;
    });
    renderWith(<Board />, { client });
    await userEvent.click(await screen.findByRole("button", { name: "New task" }));
    const dialog = screen.getByRole("dialog");
    await userEvent.click(within(dialog).getByRole("button", { name: "Create task" }));
    expect(within(dialog).getByRole("alert")).toHaveTextContent("A task needs a title.");
    await userEvent.type(within(dialog).getByLabelText("Title"), "Ship it");
    await userEvent.selectOptions(within(dialog).getByLabelText("Assignee"), "agent:a1");
    await userEvent.click(within(dialog).getByRole("button", { name: "Create task" }));
    const todo = await screen.findByRole("region", { name: "To do" });
    expect(within(todo).getByText("Ship it")).toBeInTheDocument();
    expect(within(todo).getByText("Builder (agent)")).toBeInTheDocument();
    const input = calls.find((c) => c.name === "CreateTask")!.variables.input as Record<string, unknown>;
    expect(input).toMatchObject({ workspaceId: "w1", title: "Ship it", assigneeAgentId: "a1", assigneeUserId: null });
  });

  it("shows the API's error readably when creating fails, and keeps the dialog open", async () => {
    const { client } = mockClient(({ name }) => {
      if (name === "BoardOptions") return NO_OPTIONS;
      if (name === "BoardTasks") return page([]);
      if (name === "CreateTask") {
        return { error: new CombinedError({ graphQLErrors: [{ message: "You may not create tasks here", extensions: { code: "FORBIDDEN" } }] }) };
      }
      return undefined;
    });
    renderWith(<Board />, { client });
    await userEvent.click(await screen.findByRole("button", { name: "New task" }));
    await userEvent.type(screen.getByLabelText("Title"), "Nope");
    await userEvent.click(screen.getByRole("button", { name: "Create task" }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Not allowed");
    expect(alert).toHaveTextContent("You may not create tasks here");
    expect(screen.getByRole("dialog")).toBeInTheDocument();
  });
});

describe("comment composer", () => {
  it("finds the @word under the caret", () => {
    expect(mentionQuery("hi @bu", 6)).toEqual({ start: 3, query: "bu" });
    expect(mentionQuery("mail a@b", 8)).toBeNull();
  });

  it("suggests agents and teams after @ and tags them by id", async () => {
    const { client, calls } = mockClient(({ name }) =>
      name === "PostComment" ? { data: { postComment: { id: "c1" } } } : undefined,
    );
    let posted = 0;
    renderWith(
      <Composer
        taskId="t1"
        mentionables={[
          { id: "a1", name: "Builder", handle: "builder", kind: "agent" },
          { id: "t9", name: "Docs team", handle: "docs", kind: "team" },
        ]}
        onPosted={() => posted++}
      />,
      { client },
    );
    const box = screen.getByRole("textbox", { name: "Comment" });
    await userEvent.type(box, "Please @bu");
    expect(screen.getByRole("option", { name: /@builder/ })).toBeInTheDocument();
    await userEvent.keyboard("{Enter}");
    await userEvent.type(box, "and @docs review");
    await userEvent.click(screen.getByRole("button", { name: "Comment" }));
    await waitFor(() => expect(posted).toBe(1));
    expect(calls.find((c) => c.name === "PostComment")!.variables.input).toMatchObject({
      taskId: "t1",
      body: "Please @builder and @docs review",
      agentIds: ["a1"],
      teamIds: ["t9"],
    });
    expect(box).toHaveValue("");
  });
});

describe("transcript", () => {
  it("orders chunks, drops repeats and flattens events", () => {
    const chunks = [
      { attempt: 1, seq: 2, events: [{ kind: "text", text: "second" }] },
      { attempt: 1, seq: 1, events: [{ kind: "text", text: "first" }] },
      { attempt: 1, seq: 2, events: [{ kind: "text", text: "second" }] },
    ];
    expect(flattenChunks(chunks).map((e) => e.event.text)).toEqual(["first", "second"]);
  });

  it("renders text, tool calls, results and cost as chunks stream in", async () => {
    let push: ((value: unknown) => void) | null = null;
    const { client } = mockClient(({ name }) => {
      if (name === "RunStatus") {
        return {
          data: {
            run: {
              id: "r1", status: "RUNNING", failureCode: null, error: null, attempt: 1, costUsd: null,
              durationMs: null, createdAt: "2026-01-01T00:00:00Z", agent: { id: "a1", name: "Builder" }, history: [],
            },
          },
        };
      }
      if (name === "RunTranscriptLive") return new Promise((resolve) => (push = resolve));
      return undefined;
    });
    renderWith(<Transcript runId="r1" />, { client });
    expect(await screen.findByText("Waiting for output…")).toBeInTheDocument();
    await act(async () =>
      push!({
        data: {
          runTranscript: {
            attempt: 1,
            seq: 1,
            events: [
              { kind: "text", text: "Looking at the repo" },
              { kind: "tool_call", call_id: "1", name: "Bash", input: { command: "ls" } },
              { kind: "tool_result", call_id: "1", output: "README.md", is_error: false },
              { kind: "usage", input_tokens: 10, output_tokens: 5, cost_usd: 0.0123 },
            ],
          },
        },
      }),
    );
    expect(await screen.findByText("Looking at the repo")).toBeInTheDocument();
    expect(screen.getByText("Tool call · Bash")).toBeInTheDocument();
    expect(screen.getByText("README.md")).toBeInTheDocument();
    expect(screen.getByTestId("transcript-figures")).toHaveTextContent("Cost $0.0123");
    expect(screen.getByTestId("transcript-status")).toHaveTextContent("Running");
  });
});
