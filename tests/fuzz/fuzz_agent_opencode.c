/* libFuzzer target for the opencode adapter's stdout parser (src/agent). See fuzz_agent.h. */
#define FUZZ_AGENT "opencode"
#include "fuzz_agent.h"
