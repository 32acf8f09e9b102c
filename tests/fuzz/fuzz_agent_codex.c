/* libFuzzer target for the codex adapter's stdout parser (src/agent). See fuzz_agent.h. */
#define FUZZ_AGENT "codex"
#include "fuzz_agent.h"
