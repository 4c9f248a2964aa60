import react from "@vitejs/plugin-react";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const outDir = fileURLToPath(new URL("../taskmachine/static/app", import.meta.url));
// The dev server proxies the API to a local `taskmachine serve`. No changeOrigin: the server
// refuses cross-origin WebSocket handshakes, so the Origin header must stay as the browser sent it.
const api = process.env.TASKMACHINE_DEV_API ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  build: { outDir, emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 900 },
  server: {
    proxy: {
      "/graphql": { target: api, ws: true },
      "/auth": { target: api },
    },
  },
  test: {
    environment: "jsdom",
    globals: true,
    setupFiles: ["./src/test/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
    css: false,
    testTimeout: 20_000,
  },
});
