// A real machine for the browser tests: `tama setup` (approved in the browser), `tama daemon`
// driving the real claude CLI, and a scripted mock model server that claude talks to.
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "./harness.mjs";

export const CLI_BIN = join(ROOT, ".tools", "clis", "node_modules", ".bin");
const VENV_BIN = join(ROOT, ".venv", "bin");

function collect(child) {
  const state = { output: "" };
  child.stdout.on("data", (d) => (state.output += d));
  child.stderr.on("data", (d) => (state.output += d));
  return state;
}

async function waitFor(check, what, state, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen in ${timeoutMs / 1000} s:\n${state.output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stopChild(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  child.kill("SIGTERM");
  return new Promise((r) => child.once("exit", r));
}

/** The mock model server (frontend/e2e/mock_model.py), scripted with `turns` ({shell} | {answer}). */
export async function startMockModel(turns) {
  const child = spawn(join(VENV_BIN, "python"), [join(import.meta.dirname, "mock_model.py")], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "pipe"],
  });
  const state = collect(child);
  child.stdin.end(JSON.stringify(turns));
  const ready = await waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`mock_model.py exited (${child.exitCode}):\n${state.output}`);
      const line = state.output.split("\n").find((l) => l.startsWith("{\"url\""));
      return line ? JSON.parse(line) : null;
    },
    "the mock model server starting",
    state,
    20_000,
  );
  return { ...ready, output: () => state.output, stop: () => stopChild(child) };
}

/**
 * A machine's home (TASKMACHINE_HOME) connected through the real `tama setup`: `approve(url)` is
 * called with the approval page's address (the test approves it in the browser); resolves once
 * setup has written the config. Then `startDaemon(overrides)` runs the real `tama daemon`.
 */
export async function connectMachine(server, name, approve) {
  const base = mkdtempSync(join(tmpdir(), "tm-e2e-machine-"));
  const home = join(base, "home");
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("TASKMACHINE_"))),
    HOME: base,
    TASKMACHINE_HOME: home,
    PATH: `${CLI_BIN}:${VENV_BIN}:${process.env.PATH}`,
  };
  const setup = spawn(join(VENV_BIN, "tama"), ["setup", "--api-url", server.base, "--name", name, "--no-browser"], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const state = collect(setup);
  const url = await waitFor(
    () => {
      if (setup.exitCode !== null) throw new Error(`tama setup exited (${setup.exitCode}):\n${state.output}`);
      return /https?:\/\/\S+\/machines\/approve\S*/.exec(state.output)?.[0] ?? null;
    },
    "tama setup printing the approval address",
    state,
    20_000,
  );
  await approve(url);
  const code = setup.exitCode ?? (await new Promise((r) => setup.once("exit", r)));
  if (code !== 0) throw new Error(`tama setup exited ${code} after the approval:\n${state.output}`);
  const configFile = join(home, "config.json");
  if (!existsSync(configFile)) throw new Error(`tama setup wrote no ${configFile}:\n${state.output}`);
  // Test pace: heartbeat every second; only claude, so detection does not wait on codex.
  const config = JSON.parse(readFileSync(configFile, "utf8"));
  config.heartbeat_interval_seconds = 1;
  config.runtime_paths = { claude: join(CLI_BIN, "claude") };
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  chmodSync(configFile, 0o600);

  let daemon = null;
  let daemonState = { output: "" };
  return {
    home,
    setupOutput: state.output,
    machineId: config.machine_id,
    daemonOutput: () => daemonState.output,
    /** `tama daemon`, with the CLIs' model requests sent to `model` (a startMockModel()). */
    startDaemon(model) {
      const overrides = { claude: { base_url: model.url, api_key: "test-key" } };
      daemon = spawn(join(VENV_BIN, "tama"), ["daemon", "--log-level", "WARNING"], {
        env: { ...env, TASKMACHINE_PROVIDER_OVERRIDES: JSON.stringify(overrides) },
        stdio: ["ignore", "pipe", "pipe"],
      });
      daemonState = collect(daemon);
      return daemon;
    },
    async stop() {
      await stopChild(daemon);
      rmSync(base, { recursive: true, force: true });
    },
  };
}
