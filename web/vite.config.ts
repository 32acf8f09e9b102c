import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

/*
 * The client package is compiled from its source (clients/typescript/src), so `npm ci` here is all a
 * clean clone needs; its two runtime dependencies resolve from this node_modules (dedupe).
 * Output follows the server's embedding contract: dist/index.html + dist/assets/<name>-<hash>.*,
 * no inline script or style (the server's CSP forbids both).
 * Dev: AGENTD_URL=http://127.0.0.1:PORT npm run dev proxies /v1 to a running agentd.
 */
export default defineConfig({
  resolve: {
    alias: { "@agentd/client": fileURLToPath(new URL("../clients/typescript/src/index.ts", import.meta.url)) },
    dedupe: ["@durable-streams/client", "@durable-streams/state", "preact", "@preact/signals"],
  },
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    target: "es2022",
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    cssCodeSplit: false,
    sourcemap: false,
  },
  server: {
    proxy: { "/v1": { target: process.env.AGENTD_URL ?? "http://127.0.0.1:4437", changeOrigin: false } },
  },
});
