# Entry points. Every target sets up what it needs first:
#   make study   run (or continue) the default Optuna study
#   make test    run the test suite
#   make ui      serve the MLflow UI on 127.0.0.1
#   make plots   export plots and a table for the latest study (STUDY=name for another)
#   make bench   check the PyTorch reference and the libraries against ours, then
#                time everything side by side (about 90 min; a short run:
#                BENCH_ARGS="--rounds 2 --epochs 2 --max-batches 20 --trials 2")
#   make bench-envs  set up the virtualenvs of the other libraries (benchmarks/.envs)
# Extra Hydra overrides go in ARGS, e.g. make study ARGS="energy=hpc study.n_trials=4".

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist
PORT ?= 5000
STUDY ?=
ARGS ?=
BENCH_ARGS ?=
BENCH_ENVS := benchmarks/.envs

.PHONY: setup data study test ui plots lint clean bench bench-envs

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Fashion-MNIST's original files come from Debian's dataset-fashion-mnist
# package; then TFDS prepares them once under ~/tensorflow_datasets.
data: $(STAMP)
	@if [ ! -f $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing dataset-fashion-mnist with apt-get"; \
	    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	  else \
	    echo "Fashion-MNIST is missing: run 'sudo apt-get install -y dataset-fashion-mnist'" \
	         "or put the four IDX files in a folder and pass FASHION_MNIST_DIR=<folder>."; \
	    exit 1; \
	  fi; \
	fi
	$(BIN)/python -m trainers.data dataset.manual_dir=$(FASHION_MNIST_DIR)

study: data
	$(BIN)/python -m study dataset.manual_dir=$(FASHION_MNIST_DIR) $(ARGS)

test: data
	$(BIN)/python -m pytest -q

ui: $(STAMP)
	@echo "MLflow UI at http://127.0.0.1:$(PORT) (Ctrl-C to stop)"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db \
	  --default-artifact-root ./mlruns --host 127.0.0.1 --port $(PORT)

plots: $(STAMP)
	$(BIN)/python -m analysis $(if $(STUDY),analysis.study=$(STUDY)) $(ARGS)

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

# benchmarks/run.py runs the parity checks first (timings of code that
# computes something else would mean nothing), then every system interleaved
# over BENCH_ARGS rounds and prints the table of medians. Libraries whose env
# is missing are skipped (make bench-envs).
bench: $(VENV)/.bench-installed
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-envs:
	bash benchmarks/envs.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) outputs reports
