// Vitest reporter that prints, after the run, pass/fail/skip counts per test file and per top-level
// describe block, the names of the failed tests, and one closing total line "N passed, N failed".
function tally(tests) {
  const n = { passed: 0, failed: 0, skipped: 0 }
  for (const t of tests) {
    const state = t.result().state
    if (state === "passed") n.passed++
    else if (state === "failed") n.failed++
    else n.skipped++
  }
  return n
}

function line(label, n) {
  return `${label}: ${n.passed} passed, ${n.failed} failed, ${n.skipped} skipped`
}

export default class SummaryReporter {
  onTestRunEnd(testModules, unhandledErrors) {
    const total = { passed: 0, failed: 0, skipped: 0 }
    const out = ["", "== conformance summary =="]
    const failed = []
    for (const mod of testModules) {
      const n = tally(mod.children.allTests())
      out.push(line(mod.relativeModuleId, n))
      for (const suite of mod.children.suites()) {
        out.push(line(`  ${suite.name}`, tally(suite.children.allTests())))
      }
      for (const t of mod.children.allTests("failed")) failed.push(t.fullName)
      for (const k of Object.keys(total)) total[k] += n[k]
    }
    if (failed.length > 0) {
      out.push("failed tests:")
      for (const name of failed) out.push(`  - ${name}`)
    }
    if (unhandledErrors.length > 0) out.push(`unhandled errors: ${unhandledErrors.length}`)
    out.push(`${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`)
    process.stdout.write(out.join("\n") + "\n")
  }
}
