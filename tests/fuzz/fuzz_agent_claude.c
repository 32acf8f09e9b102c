/* libFuzzer target for the claude-code adapter's stdout parser (src/agent). See fuzz_agent.h. */
#define FUZZ_AGENT "claude-code"
#include "fuzz_agent.h"
