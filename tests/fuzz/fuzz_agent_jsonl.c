/* libFuzzer target for the jsonl adapter's stdout parser (src/agent). See fuzz_agent.h. */
#define FUZZ_AGENT "jsonl"
#include "fuzz_agent.h"
