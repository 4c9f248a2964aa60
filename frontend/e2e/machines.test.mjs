// Machines end to end: `tama setup`'s approval page, then the real daemon heartbeating with the
// real claude and codex CLIs, and an owner enabling a runtime. Needs RabbitMQ (127.0.0.1:5672,
// management on :15672): the server gives each approved machine its own broker user.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ROOT, gql, launchBrowser, screenshot, signedInContext, startServer } from "./harness.mjs";

const CLI_BIN = join(ROOT, ".tools", "clis", "node_modules", ".bin");
let server;
let browser;
let owner;
let workspaceId;
let ticket;
let credentials;
let daemon;
let daemonOutput = "";
const executionRoot = mkdtempSync(join(tmpdir(), "tm-e2e-exec-"));

async function api(query, variables = {}) {
  const response = await fetch(`${server.base}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

async function reachable(port) {
  const { connect } = await import("node:net");
  return await new Promise((done) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.end(), done(true)));
    socket.once("error", () => done(false));
  });
}

before(async () => {
  assert.ok(await reachable(5672), "RabbitMQ is not listening on 127.0.0.1:5672 (start it: rabbitmq-server -detached)");
  assert.ok(await reachable(15672), "RabbitMQ's management API is not on 127.0.0.1:15672 (rabbitmq-plugins enable rabbitmq_management)");
  for (const cli of ["claude", "codex"]) {
    assert.ok(existsSync(join(CLI_BIN, cli)), `${cli} is missing: run scripts/install-clis`);
  }
  server = await startServer({ broker: true });
  browser = await launchBrowser();
  owner = await signedInContext(browser, server, "owner@example.com");
  workspaceId = (await gql(owner.page, `mutation { createWorkspace(input: {name: "Fleet"}) { id } }`)).createWorkspace.id;
});

after(async () => {
  if (daemon && daemon.exitCode === null) {
    daemon.kill("SIGTERM");
    await new Promise((r) => daemon.once("exit", r));
  }
  await browser?.close();
  await server?.stop();
  rmSync(executionRoot, { recursive: true, force: true });
});

test("the approval page that tama setup opens approves the machine into the workspace", async () => {
  ticket = (
    await api(
      `mutation($i: MachineApprovalRequestInput!) { requestMachineApproval(input: $i) { userCode pollToken approvalUrl } }`,
      { i: { name: "build-box", hostname: "build-box.local", os: "linux", cliVersion: "0.1.0" } },
    )
  ).requestMachineApproval;
  const { page } = owner;
  await page.goto(ticket.approvalUrl);
  await page.getByRole("heading", { name: "Connect a machine" }).waitFor();
  assert.equal(await page.getByTestId("approval-code").innerText(), ticket.userCode);
  await screenshot(page, "10-machine-approval");
  await page.getByRole("button", { name: "Approve machine" }).click();
  await page.getByText("Machine approved").waitFor();
  const poll = (
    await api(
      `mutation($t: String!) { pollMachineApproval(pollToken: $t) { status credentials { machineId machineName accessToken refreshToken amqpUrl } } }`,
      { t: ticket.pollToken },
    )
  ).pollMachineApproval;
  assert.equal(poll.status, "APPROVED");
  credentials = poll.credentials;
});

test("a signed-out owner following the approval link signs in and comes back to it", async () => {
  const second = (
    await api(`mutation { requestMachineApproval(input: {name: "spare"}) { userCode approvalUrl } }`)
  ).requestMachineApproval;
  const context = await browser.newContext({ baseURL: server.base });
  const page = await context.newPage();
  await page.goto(second.approvalUrl);
  await page.getByRole("button", { name: "Email me a sign-in link" }).waitFor();
  await page.goto(await server.loginLink("owner@example.com"));
  await page.getByTestId("approval-code").getByText(second.userCode).waitFor();
  await page.getByRole("button", { name: "Deny" }).click();
  await page.getByText("Machine denied").waitFor();
  await context.close();
});

test("the daemon's heartbeat brings the machine online with its runtimes; an owner enables one", async () => {
  daemon = spawn(join(ROOT, ".venv", "bin", "python"), [join(import.meta.dirname, "run_daemon.py")], {
    env: { ...process.env, HOME: executionRoot, PATH: `${CLI_BIN}:${process.env.PATH}` },
    stdio: ["pipe", "pipe", "pipe"],
  });
  daemon.stdout.on("data", (d) => (daemonOutput += d));
  daemon.stderr.on("data", (d) => (daemonOutput += d));
  daemon.stdin.end(
    JSON.stringify({
      ...credentials,
      apiUrl: server.base,
      executionRoot,
      runtimePaths: { claude: join(CLI_BIN, "claude"), codex: join(CLI_BIN, "codex") },
    }),
  );
  const { page } = owner;
  await page.goto(`/w/${workspaceId}/machines`);
  const machine = page.getByRole("listitem", { name: "Machine build-box" });
  try {
    await machine.getByTestId("machine-status").getByText("Online", { exact: true }).waitFor({ timeout: 30_000 });
    await machine.locator('[data-runtime-id]', { hasText: "claude" }).waitFor({ timeout: 30_000 });
  } catch (error) {
    throw new Error(`${error.message}\n--- daemon output ---\n${daemonOutput}`);
  }
  assert.match(await machine.innerText(), new RegExp(executionRoot.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  const claude = machine.locator("[data-runtime-id]", { hasText: "claude" });
  const toggle = claude.getByRole("switch", { name: "Enabled for agents" });
  assert.equal(await toggle.isChecked(), false, "a detected runtime starts disabled for agents");
  await toggle.check();
  await claude.getByTestId("runtime-ready").getByText("Ready", { exact: true }).waitFor({ timeout: 15_000 });
  await screenshot(page, "11-machines-online");
  await page.reload();
  assert.equal(
    await page.getByRole("listitem", { name: "Machine build-box" }).locator("[data-runtime-id]", { hasText: "claude" }).getByRole("switch").isChecked(),
    true,
    "the switch stays on after a reload",
  );
});
