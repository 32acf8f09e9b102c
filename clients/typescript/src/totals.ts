/* Session totals are the sum of its runs' own totals (each run record, or run_completed, carries the
 * run's usage and cost once): never a sum of per-message usage, which agents repeat. */
import type { Run, RunSummary } from "./client.js";
import { usageTokens } from "./events.js";

export function sumRuns(runs: Iterable<Run>): RunSummary {
  const t: RunSummary = { runs: 0, input_tokens: 0, output_tokens: 0, cost_usd: 0 };
  for (const r of runs) {
    t.runs++;
    const u = usageTokens(r.usage);
    t.input_tokens += u.input;
    t.output_tokens += u.output;
    if (typeof r.cost_usd === "number" && Number.isFinite(r.cost_usd)) t.cost_usd += r.cost_usd;
  }
  return t;
}
