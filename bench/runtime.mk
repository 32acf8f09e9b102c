# bench-runtime: builds and runs only the runtime benchmark (bench/runtime/run.sh): agentd's
# in-process runtime API against pexpect replwrap and jupyter_client + ipykernel.
# Included by the top-level Makefile, which defines BUILD.
.PHONY: bench-runtime
bench-runtime: $(BUILD)/bench/runtime/rtbench
	@BUILD=$(BUILD) sh bench/runtime/run.sh
