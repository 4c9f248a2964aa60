// End-to-end: the built app served by a real `taskmachine serve`, driven in Debian's chromium.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { gql, launchBrowser, screenshot, signedInContext, startServer } from "./harness.mjs";

let server;
let browser;
let owner; // { context, page }
let workspaceId;
let agentId;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("a signed-out visitor sees sign-in and can ask for a magic link", async () => {
  const context = await browser.newContext({ baseURL: server.base });
  const page = await context.newPage();
  await page.goto("/");
  await page.getByLabel("Email").fill("someone@example.com");
  await screenshot(page, "01-sign-in");
  await page.getByRole("button", { name: "Email me a sign-in link" }).click();
  await page.getByText("Check your email").waitFor();
  await context.close();
});

test("the magic link signs the owner in; the board shows the workspace", async () => {
  owner = await signedInContext(browser, server, "owner@example.com");
  const { page } = owner;
  await page.getByText("You are not in a workspace yet").waitFor();
  const created = await gql(page, `mutation { createWorkspace(input: {name: "Acme"}) { id } }`);
  workspaceId = created.createWorkspace.id;
  const agent = await gql(
    page,
    `mutation($w: ID!) { createAgent(workspaceId: $w, profile: {name: "Builder", handle: "builder", instructions: "Build things."}) { id } }`,
    { w: workspaceId },
  );
  agentId = agent.createAgent.id;
  await page.goto("/");
  await page.waitForURL(`**/w/${workspaceId}/board`);
  await page.getByRole("heading", { name: "Board" }).waitFor();
  await page.getByText("No tasks yet").waitFor();
});

test("create a task assigned to an agent; it lands in its column", async () => {
  const { page } = owner;
  await page.getByRole("button", { name: "New task" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByLabel("Title").fill("Write the release notes");
  await dialog.getByLabel("Priority").selectOption("HIGH");
  await dialog.getByLabel("Assignee").selectOption(`agent:${agentId}`);
  await screenshot(page, "02-new-task");
  await dialog.getByRole("button", { name: "Create task" }).click();
  await dialog.waitFor({ state: "detached" });
  const card = page.locator('[data-status="TODO"] .card', { hasText: "Write the release notes" });
  await card.waitFor();
  assert.match(await card.innerText(), /Builder \(agent\)/);
  assert.match(await card.innerText(), /High/);
});

test("a second browser sees the board change live, without a reload", async () => {
  const second = await signedInContext(browser, server, "owner@example.com");
  const other = second.page;
  await other.goto(`/w/${workspaceId}/board`);
  await other.locator(".card", { hasText: "Write the release notes" }).waitFor();
  const navigations = [];
  other.on("framenavigated", (frame) => frame === other.mainFrame() && navigations.push(frame.url()));
  // Give the live subscription a moment to be established before the change.
  await other.waitForTimeout(500);

  await gql(
    owner.page,
    `mutation($i: CreateTaskInput!) { createTask(input: $i) { id } }`,
    { i: { workspaceId, title: "Fix the login page", status: "IN_PROGRESS" } },
  );
  await other.locator('[data-status="IN_PROGRESS"] .card', { hasText: "Fix the login page" }).waitFor({ timeout: 10_000 });

  // An edit made in the first browser moves the card in the second.
  const { page } = owner;
  await page.getByRole("button", { name: /Edit task #1/ }).click();
  await page.getByRole("dialog").getByLabel("Status").selectOption("IN_REVIEW");
  await page.getByRole("dialog").getByRole("button", { name: "Save" }).click();
  await other.locator('[data-status="IN_REVIEW"] .card', { hasText: "Write the release notes" }).waitFor({ timeout: 10_000 });
  assert.deepEqual(navigations, [], "the second browser must not reload");
  await screenshot(other, "03-board-live");
  await second.context.close();
});

test("filters narrow the board by priority and assignee", async () => {
  const { page } = owner;
  await page.getByLabel("Filter by priority").selectOption("HIGH");
  await page.getByTestId("task-count").getByText("1 of 1 tasks", { exact: true }).waitFor();
  assert.equal(await page.locator(".card", { hasText: "Fix the login page" }).count(), 0);
  await page.getByRole("button", { name: "Clear filters" }).click();
  await page.getByLabel("Filter by assignee").selectOption(`agent:${agentId}`);
  await page.getByTestId("task-count").getByText("1 of 1 tasks", { exact: true }).waitFor();
  await page.getByRole("button", { name: "Clear filters" }).click();
  await page.getByTestId("task-count").getByText("2 of 2 tasks", { exact: true }).waitFor();
});

test("the task page shows the timeline; a comment tagging the agent appears in it", async () => {
  const { page } = owner;
  await page.getByRole("link", { name: /Write the release notes/ }).click();
  await page.getByRole("heading", { name: "Write the release notes" }).waitFor();
  await page.getByTestId("task-assignee").getByText("Builder (agent)").waitFor();
  const composer = page.getByRole("textbox", { name: "Comment" });
  await composer.fill("Please start with @bui");
  await page.getByRole("option", { name: /@builder/ }).waitFor();
  await composer.press("Enter");
  await composer.pressSequentially("thanks");
  await page.getByRole("button", { name: "Comment", exact: true }).click();
  const timeline = page.getByTestId("timeline");
  await timeline.getByText("Please start with @builder thanks").waitFor();
  await timeline.getByRole("button", { name: "React 👍" }).first().click();
  await timeline.getByRole("button", { name: "👍 1" }).waitFor();
  await screenshot(page, "04-task-page");
});

test("every main view renders readably (screenshots)", async () => {
  const { page } = owner;
  for (const [path, heading, name] of [
    ["inbox", "Inbox", "05-inbox"],
    ["discuss", "Discuss", "06-discuss"],
    ["agents", "Agents", "07-agents"],
    ["machines", "Machines", "08-machines"],
  ]) {
    await page.goto(`/w/${workspaceId}/${path}`);
    await page.getByRole("heading", { name: heading, exact: true }).waitFor();
    assert.equal(await page.getByRole("alert").count(), 0, `${path} shows an error`);
    await screenshot(page, name);
  }
  await page.goto(`/w/${workspaceId}/machines`);
  await page.getByText("No machines yet").waitFor();
});

test("Discuss: start a chat with an agent and send a turn", async () => {
  const { page } = owner;
  await page.goto(`/w/${workspaceId}/discuss`);
  await page.getByLabel("Chat with").selectOption(agentId);
  await page.getByRole("button", { name: "New chat" }).click();
  await page.waitForURL(`**/w/${workspaceId}/discuss/*`);
  const box = page.getByRole("textbox", { name: "Message" });
  await box.fill("What should we build first?");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator(".bubble--user", { hasText: "What should we build first?" }).waitFor();
  await screenshot(page, "06-discuss-chat");
});

test("the task dialog works from the keyboard: opens, traps focus, closes on Escape", async () => {
  const { page } = owner;
  await page.goto(`/w/${workspaceId}/board`);
  const button = page.getByRole("button", { name: "New task" });
  await button.focus();
  await page.keyboard.press("Enter");
  const dialog = page.getByRole("dialog");
  await dialog.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.closest("[role=dialog]") !== null), true);
  for (let i = 0; i < 12; i++) await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.closest("[role=dialog]") !== null), true, "focus stays in the dialog");
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "New task", "focus returns to the button");
});

test("an agent profile can be edited and saved", async () => {
  const { page } = owner;
  await page.goto(`/w/${workspaceId}/agents/${agentId}`);
  const form = page.getByRole("form", { name: "Profile of Builder" });
  await form.getByLabel("Instructions").fill("Write clear release notes.");
  await form.getByLabel("Concurrency (runs at once)").fill("2");
  await form.getByLabel("Autonomy").selectOption("MEDIUM");
  await form.getByRole("button", { name: "Save profile" }).click();
  await form.getByText("Saved").waitFor();
  await page.reload();
  await form.getByLabel("Instructions").waitFor();
  assert.equal(await form.getByLabel("Instructions").inputValue(), "Write clear release notes.");
  assert.equal(await form.getByLabel("Concurrency (runs at once)").inputValue(), "2");
});

test("a viewer sees no create or edit actions (hidden, not disabled)", async () => {
  await gql(
    owner.page,
    `mutation($w: ID!) { addMember(input: {workspaceId: $w, email: "viewer@example.com", role: VIEWER}) { id } }`,
    { w: workspaceId },
  );
  const viewer = await signedInContext(browser, server, "viewer@example.com");
  await viewer.page.waitForURL(`**/w/${workspaceId}/board`);
  await viewer.page.locator(".card").first().waitFor();
  assert.equal(await viewer.page.getByRole("button", { name: "New task" }).count(), 0);
  assert.equal(await viewer.page.getByRole("button", { name: /Edit task/ }).count(), 0);
  await viewer.page.goto(`/w/${workspaceId}/agents/${agentId}`);
  await viewer.page.getByLabel("Instructions").waitFor();
  assert.equal(await viewer.page.getByRole("button", { name: "Save profile" }).count(), 0);
  await viewer.context.close();
});

test("at phone width the nav folds behind Menu and works with the keyboard", async () => {
  const phone = await signedInContext(browser, server, "owner@example.com", { viewport: { width: 390, height: 844 } });
  const { page } = phone;
  await page.waitForURL(`**/w/${workspaceId}/board`);
  await page.locator(".card").first().waitFor();
  assert.equal(await page.getByRole("link", { name: "Inbox" }).isVisible(), false);
  const menu = page.getByRole("button", { name: "Menu" });
  await menu.focus();
  await page.keyboard.press("Enter");
  await page.getByRole("link", { name: "Inbox" }).waitFor();
  await screenshot(page, "09-phone-menu");
  await page.getByRole("link", { name: "Inbox" }).focus();
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Inbox", exact: true }).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  assert.equal(overflow, false, "no horizontal scrolling at phone width");
  await phone.context.close();
});

test("an unknown task shows a readable empty state, not a blank page", async () => {
  const { page } = owner;
  await page.goto(`/w/${workspaceId}/tasks/00000000-0000-0000-0000-000000000000`);
  await page.getByText(/This task is not available|Not found/).first().waitFor();
});

test("sign-out returns to sign-in", async () => {
  const { page } = owner;
  await page.goto(`/w/${workspaceId}/board`);
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Email me a sign-in link" }).waitFor();
});
