import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["conformance.test.js"],
    watch: false,
    // The suite talks to one server; its tests rely on running one at a time.
    fileParallelism: false,
    reporters: ["default", "./summary-reporter.js"],
  },
})
