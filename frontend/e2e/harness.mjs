// Starts a real `taskmachine serve` (own port, own temp data dir) and Debian's chromium for a suite.
import { spawn, execFile } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

const run = promisify(execFile);
export const ROOT = resolve(import.meta.dirname, "../..");
export const ARTIFACTS = join(ROOT, "test-artifacts", "frontend");
const VENV_BIN = join(ROOT, ".venv", "bin");
export const CHROMIUM = "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
];

async function freePort() {
  return await new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

/** A running server with its own SQLite database; `stop()` ends it and removes the data. */
export async function startServer({ broker = false } = {}) {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), "tm-e2e-"));
  const env = {
    ...process.env,
    TASKMACHINE_DATA_DIR: dataDir,
    TASKMACHINE_PORT: String(port),
    TASKMACHINE_HOST: "127.0.0.1",
    TASKMACHINE_PUBLIC_URL: `http://127.0.0.1:${port}`,
    TASKMACHINE_BROKER_ENABLED: broker ? "true" : "false",
    TASKMACHINE_LOG_LEVEL: "WARNING",
  };
  const child = spawn(join(VENV_BIN, "taskmachine"), ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`taskmachine serve exited (${child.exitCode}):\n${output}`);
    try {
      const response = await fetch(`${base}/healthz`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGTERM");
      throw new Error(`taskmachine serve did not become healthy in 30 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    base,
    port,
    env,
    output: () => output,
    /** A one-time sign-in link for this address (the person is created if new). */
    async loginLink(email) {
      const { stdout } = await run(join(VENV_BIN, "taskmachine"), ["login-link", email], { env });
      const link = stdout.trim().split("\n").at(-1);
      if (!link?.includes("/auth/magic")) throw new Error(`login-link printed no link: ${stdout}`);
      return link;
    },
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

/** Signs a fresh browser context in through the magic link, as a person would. */
export async function signedInContext(browser, server, email, options = {}) {
  const context = await browser.newContext({ baseURL: server.base, ...options });
  const page = await context.newPage();
  await page.goto(await server.loginLink(email));
  return { context, page };
}

/** Runs a GraphQL operation with the page's own session cookie (same origin, like the app). */
export async function gql(page, query, variables = {}) {
  const result = await page.evaluate(
    async ([q, v]) => {
      const response = await fetch("/graphql", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: q, variables: v }),
      });
      return await response.json();
    },
    [query, variables],
  );
  if (result.errors) throw new Error(`GraphQL error: ${JSON.stringify(result.errors)}`);
  return result.data;
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}
