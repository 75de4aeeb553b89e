# Set-up and everyday commands. `make demo` and `make test` create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel first: a bare `torch` requirement would pull several GB of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
SHARED_DATA ?= $(abspath ../shared/data)

.PHONY: install demo test test-slow gpu-check lint tables clean

$(BIN)/cfc-bench: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/cfc-bench

# CfC and an LSTM trained side by side on a reduced XOR (conf/experiment/demo.yaml), then
# their table beside the paper's numbers.
demo: install
	rm -rf outputs/demo
	$(BIN)/cfc-bench train -m experiment=demo model=cfc,lstm hydra/launcher=joblib \
		hydra.launcher.n_jobs=2 hydra.sweep.dir=outputs/demo
	$(BIN)/cfc-bench tables --runs outputs/demo --out outputs/demo/tables --ran-only

test: install
	$(BIN)/pytest -q

test-slow: install
	$(BIN)/pytest -q -m slow

# On a machine with CUDA (torch's CUDA build in .venv): the tests marked gpu, then the benchmark
# there (results/bench/*_cuda.csv).
gpu-check: install
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else \
		'make gpu-check: torch sees no CUDA device here; install its CUDA build into .venv')"
	$(BIN)/pytest -q -m gpu -rs
	$(MAKE) bench BENCH_DEVICE=cuda

lint: install
	$(BIN)/ruff check cfc_bench tests data_scripts
	$(BIN)/ruff format --check cfc_bench tests data_scripts

# Tables, results/README.md (what reproduces, computed from the tables) and the figures
# results/figures/<task>_metric_vs_time.png from every run under results/runs and
# results/diagnostics (CHANGED rows beside their presets'), plus the
# scaling figures of the `cfc-bench bench --sweep` CSVs under results/bench. Only this target
# writes the committed results (--committed); `cfc-bench tables` alone writes outputs/tables.
tables: install
	mkdir -p results/runs results/diagnostics
	$(BIN)/cfc-bench tables --committed --runs results/runs results/diagnostics --out results/tables \
		--reported results/paper/reported.csv --readme results/README.md \
		--figures results/figures --bench results/bench

clean:
	rm -rf outputs build dist *.egg-info .pytest_cache

# Paper reproduction of one task: every preset conf/experiment/$(TASK)_<model>.yaml, every
# seed, in one Hydra multirun into the fixed folder $(RUNS)/$(TASK)/<model>/seed<N>:
#   make reproduce TASK=walker [SEEDS=0,1,2] [MODELS=cfc,lstm] [ARGS="device=cuda"]
# task=$(TASK) is passed too, so that ARGS may set the task's own keys (task.source_split=test):
# Hydra first composes a sweep without its swept experiment.
# Resumable: run the same command again after an interruption; finished runs are skipped
# (metrics.json), interrupted ones resume from checkpoint.pt. ARGS adds Hydra overrides; a
# run whose settings differ from those already in its folder stops with an error, so give
# trials with a reduced budget their own RUNS folder, e.g.
#   make reproduce TASK=xor MODELS=cfc,lstm SEEDS=0 RUNS=outputs/smoke ARGS="trainer.epochs=2"
# `make tables` then turns results/runs into tables beside the paper's numbers.
TASK ?=
SEEDS ?= 0,1,2
# every preset of the task: the <model> of each conf/experiment/$(TASK)_<model>.yaml
MODELS ?= $(subst $(space),$(comma),$(sort $(patsubst conf/experiment/$(TASK)_%.yaml,%,\
	$(wildcard conf/experiment/$(TASK)_*.yaml))))
RUNS ?= results/runs
ARGS ?=
comma := ,
space := $(subst ,, )

.PHONY: reproduce

reproduce: install
	@test -n "$(TASK)" || { echo "usage: make reproduce TASK=xor|physionet|person_activity|walker|et_smnist [SEEDS=0,1,2] [MODELS=cfc,lstm,...] [RUNS=results/runs] [ARGS=...]" >&2; exit 2; }
	$(BIN)/cfc-bench train -m experiment=$(TASK)_$(subst $(comma),$(comma)$(TASK)_,$(MODELS)) \
		task=$(TASK) seed=$(SEEDS) hydra.sweep.dir=$(RUNS)/$(TASK) \
		'hydra.sweep.subdir=$${model.name}/seed$${seed}' $(ARGS)

# Speed-ups whose models ran minutes apart: every preset of a task (MODELS) trained for
# RETIME_EPOCHS epochs (the first is warm-up, not timed), one after another into
# results/runs/timing/$(TASK). `make tables` judges the speed claims on these ratios; the runs
# of a reproduction sweep may be days apart on a machine whose speed drifts. Another round
# over all models, averaged with the first by the tables: the same command with RETIME_SEEDS=1.
#   make retime TASK=walker MODELS=cfc,lstm,ltc [RETIME_SEEDS=1] [ARGS="trainer.threads=1"]
RETIME_EPOCHS ?= 3
RETIME_SEEDS ?= 0

.PHONY: retime

retime:
	$(MAKE) reproduce SEEDS=$(RETIME_SEEDS) RUNS=results/runs/timing ARGS='trainer.epochs=$(RETIME_EPOCHS) $(ARGS)'

# Speed of every model on this machine, `cfc-bench bench`: one table and one CSV per setting
# (a), (b), (c) and the PhysioNet-shaped one in results/bench (times are medians; ratios are
# to our CfC of the same run).
# Each setting's sizes, models and repeats: cfc_bench/bench/settings/{a,b,c,physionet}.yaml.
# One thread by default: the machine is shared, and a second thread times the neighbours.
# BENCH_REPEATS, when given, sets the timed runs of every setting.
#   make bench [BENCH_DEVICE=cuda] [BENCH_THREADS=2] [BENCH_REPEATS=5]
BENCH_DEVICE ?= cpu
BENCH_THREADS ?= 1
BENCH_REPEATS ?=
BENCH := $(BIN)/cfc-bench bench --device $(BENCH_DEVICE) --out results/bench \
	$(if $(BENCH_THREADS),--threads $(BENCH_THREADS))
# CSV name suffix: _threads<N> for N other than 1, _<device> off the CPU
BENCH_SUFFIX := $(if $(filter-out 1,$(BENCH_THREADS)),_threads$(BENCH_THREADS))$(if $(filter-out cpu,$(BENCH_DEVICE)),_$(BENCH_DEVICE))
BENCH_SETTING = $(BENCH) --suffix '$(BENCH_SUFFIX)' $(if $(BENCH_REPEATS),--repeats $(BENCH_REPEATS)) --setting

.PHONY: bench

bench: install
	$(BENCH_SETTING) a
	$(BENCH_SETTING) b
	$(BENCH_SETTING) c
	$(BENCH_SETTING) physionet

# Scaling of the time per training step against the hidden size and the sequence length
# (settings scaling_hidden and scaling_steps): one CSV each in results/bench and the log-log
# figures results/figures/scaling_hidden.png / scaling_steps.png.
.PHONY: scaling

scaling: install
	$(BENCH) --setting scaling_hidden --figures results/figures
	$(BENCH) --setting scaling_steps --figures results/figures

# Equal-budget hyperparameter search on validation data (docs/tuning.md): per model, TRIALS
# trials of Hydra's Optuna sweeper under task.protocol=default, the study in
# $(TUNE_OUT)/$(TASK)/<model>/study.db; the best trial's settings become the preset
# conf/experiment/tuned/$(TASK)_<model>.yaml, retrained with SEEDS into
# $(RUNS)/tuned/$(TASK)/<model>, which `make tables` shows as "tuned (N trials on validation)".
# Resumable: run the same command again after an interruption (a SIGKILL included); an
# existing preset or run of other settings is never overwritten (the command stops instead).
#   make tune TASK=physionet MODELS=cfc,gru_d,lstm TRIALS=24 [ARGS="trainer.threads=1"]
TRIALS ?= 24
TUNE_OUT ?= results/tune

.PHONY: tune

tune: install
	@test -n "$(TASK)" || { echo "usage: make tune TASK=physionet MODELS=cfc,gru_d,lstm [TRIALS=24] [SEEDS=0,1,2] [ARGS=...]" >&2; exit 2; }
	$(BIN)/cfc-bench tune --task $(TASK) --models $(MODELS) --trials $(TRIALS) --seeds $(SEEDS) \
		--out $(TUNE_OUT) --runs $(RUNS)/tuned --presets conf $(ARGS)
