// The whole flow in the browser: sign in, connect a machine with the real `tama setup`, run the
// real `tama daemon` with the real claude CLI (answering from a scripted mock model), create a
// task, assign it to an agent, watch the transcript stream in and the agent's comment, question
// and summary appear live (no reload); answer the question from the inbox, which runs it again.
// Needs RabbitMQ (127.0.0.1:5672, management on :15672) and scripts/install-clis.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { gql, launchBrowser, screenshot, signedInContext, startServer } from "./harness.mjs";
import { CLI_BIN, connectMachine, startMockModel } from "./machine.mjs";

const COMMENT = "Found it: the totals are off by one in the rounding.";
const QUESTION = "Should I also fix the old invoices?";
const SUMMARY = "Fixed the rounding; totals now match the invoices.";

let server;
let browser;
let owner;
let workspaceId;
let machine;
let model;
let agentId;
let taskUrl;
const consoleErrors = [];

async function reachable(port) {
  return await new Promise((done) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.end(), done(true)));
    socket.once("error", () => done(false));
  });
}

/** Waits for a locator; on failure adds what the daemon and the model server said. */
async function seen(locator, timeout) {
  try {
    await locator.waitFor({ timeout });
  } catch (error) {
    const shown = owner ? await owner.page.locator("main").innerText().catch(() => "") : "";
    if (owner) await screenshot(owner.page, "failed-agent-flow").catch(() => {});
    throw new Error(
      `${error.message}\n--- page ---\n${shown}\n--- console ---\n${consoleErrors.join("\n")}\n--- daemon ---\n${machine?.daemonOutput() ?? ""}\n--- model ---\n${model?.output() ?? ""}\n--- server ---\n${server?.output().slice(-4000) ?? ""}`,
    );
  }
}

before(async () => {
  assert.ok(await reachable(5672), "RabbitMQ is not listening on 127.0.0.1:5672 (start it: rabbitmq-server -detached)");
  assert.ok(await reachable(15672), "RabbitMQ's management API is not on 127.0.0.1:15672 (rabbitmq-plugins enable rabbitmq_management)");
  assert.ok(existsSync(join(CLI_BIN, "claude")), "claude is missing: run scripts/install-clis");
  server = await startServer({ broker: true });
  browser = await launchBrowser();
  model = await startMockModel([
    // The assignment's turn: start, explain, ask.
    { shell: "tama tasks status in_progress" },
    { shell: `tama tasks comment "${COMMENT}"` },
    { shell: `tama questions ask "${QUESTION}"` },
    { answer: "Asked about the old invoices; waiting for an answer." },
    // The answer's turn (the same session, resumed): summary and done.
    { shell: `tama tasks summary "${SUMMARY}"` },
    { shell: "tama tasks status done" },
    { answer: "Done." },
  ]);
});

after(async () => {
  await machine?.stop();
  await model?.stop();
  await browser?.close();
  await server?.stop();
});

test("sign in, and connect a machine through tama setup's approval page", async () => {
  owner = await signedInContext(browser, server, "owner@example.com");
  const { page } = owner;
  page.on("console", (message) => message.type() === "error" && consoleErrors.push(message.text()));
  await page.getByText("You are not in a workspace yet").waitFor();
  workspaceId = (await gql(page, `mutation { createWorkspace(input: {name: "Acme"}) { id } }`)).createWorkspace.id;
  machine = await connectMachine(server, "agent-box", async (url) => {
    await page.goto(url);
    await page.getByRole("heading", { name: "Connect a machine" }).waitFor();
    await page.getByRole("button", { name: "Approve machine" }).click();
    await page.getByText("Machine approved").waitFor();
  });
  assert.match(machine.setupOutput, /Approved: this machine is 'agent-box'/);
  machine.startDaemon(model);

  await page.goto(`/w/${workspaceId}/machines`);
  const card = page.getByRole("listitem", { name: "Machine agent-box" });
  await seen(card.getByTestId("machine-status").getByText("Online", { exact: true }), 30_000);
  const claude = card.locator("[data-runtime-id]", { hasText: "claude" });
  await seen(claude, 30_000);
  await claude.getByRole("switch", { name: "Enabled for agents" }).check();
  await seen(claude.getByTestId("runtime-ready").getByText("Ready", { exact: true }), 15_000);

  const runtimeId = await claude.getAttribute("data-runtime-id");
  agentId = (
    await gql(
      page,
      `mutation($w: ID!, $r: ID!) { createAgent(workspaceId: $w, profile: {name: "Coder", handle: "coder", defaultRuntimeId: $r}) { id } }`,
      { w: workspaceId, r: runtimeId },
    )
  ).createAgent.id;
});

test("create a task, assign it to the agent, watch the run and its transcript stream in", async () => {
  const { page } = owner;
  await page.goto(`/w/${workspaceId}/board`);
  await page.getByRole("button", { name: "New task" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByLabel("Title").fill("Fix the totals");
  await dialog.getByRole("button", { name: "Create task" }).click();
  await dialog.waitFor({ state: "detached" });
  await page.getByRole("link", { name: /Fix the totals/ }).click();
  await page.getByRole("heading", { name: "Fix the totals" }).waitFor();
  taskUrl = page.url();
  const navigations = [];
  page.on("framenavigated", (frame) => frame === page.mainFrame() && navigations.push(frame.url()));
  await page.getByText("No runs yet").waitFor();
  // Let the page's live subscriptions settle before the change they should show.
  await page.waitForTimeout(300);

  // Assign from the task page's editor, as a person would.
  await page.getByRole("button", { name: "Edit", exact: true }).click();
  await page.getByRole("dialog").getByLabel("Assignee").selectOption(`agent:${agentId}`);
  await page.getByRole("dialog").getByRole("button", { name: "Save" }).click();
  await page.getByRole("dialog").waitFor({ state: "detached" });

  // The run appears, then the agent's tool calls stream into the transcript.
  const run = page.getByRole("list", { name: "Runs" }).getByRole("listitem").first();
  await seen(run, 15_000);
  const transcript = page.getByTestId("transcript");
  await seen(transcript.getByTestId("tool-entry").filter({ hasText: "tama tasks status in_progress" }), 60_000);
  await seen(transcript.getByTestId("tool-entry").filter({ hasText: "tama questions ask" }), 60_000);

  // The agent's comment and question land on the timeline, live.
  const timeline = page.getByTestId("timeline");
  await seen(timeline.getByText(COMMENT), 30_000);
  await seen(timeline.getByTestId("comment-marker").getByText("Question"), 30_000);
  await seen(run.getByTestId("run-status").getByText("Succeeded"), 60_000);
  await seen(page.getByTestId("task-status").getByText("In progress"), 10_000);
  assert.match(await page.getByTestId("transcript-figures").innerText(), /Cost \$\d/);
  assert.match(await page.getByTestId("transcript-figures").innerText(), /Duration \d/);

  // A tool call opens to show what it returned.
  const comment = transcript.getByTestId("tool-entry").filter({ hasText: "tama tasks comment" });
  await comment.locator("summary").click();
  await comment.getByText(/^Commented \(comment /).waitFor();
  assert.match(await comment.innerText(), /tool result/i);
  await screenshot(page, "12-task-run-transcript");
  assert.deepEqual(navigations, [], "everything arrived without a reload");
});

test("answer the agent's question from the inbox; its next turn writes the summary, live", async () => {
  const { page } = owner;
  await page.goto(`/w/${workspaceId}/inbox`);
  const item = page.getByRole("listitem", { name: new RegExp(`Question: ${QUESTION.replace("?", "\\?")}`) });
  await seen(item, 15_000);
  await screenshot(page, "13-inbox-question");
  await item.getByLabel(/Your answer/).fill("No, only new ones.");
  await item.getByRole("button", { name: "Answer" }).click();
  await item.waitFor({ state: "detached" });

  await page.goto(taskUrl);
  const timeline = page.getByTestId("timeline");
  // The answer is a reply in the question's thread.
  await seen(timeline.getByText("No, only new ones."), 10_000);
  await seen(page.getByTestId("task-summary").getByText(SUMMARY), 90_000);
  await seen(page.getByTestId("task-status").getByText("Done"), 30_000);
  await seen(timeline.getByText("Coder (agent) wrote the summary"), 10_000);
  const runs = page.getByRole("list", { name: "Runs" }).getByRole("listitem");
  await seen(runs.first().getByTestId("run-status").getByText("Succeeded"), 60_000);
  assert.equal(await runs.count(), 2, "the answer ran the agent once more");
  // A finished run offers no cancel; a succeeded one no retry.
  assert.equal(await page.getByRole("button", { name: "Cancel run" }).count(), 0);
  assert.equal(await page.getByRole("button", { name: "Retry" }).count(), 0);
  await screenshot(page, "14-task-done-summary");
});
