# Two commands do everything on a fresh machine (Python 3.10+ with venv):
#   make demo   the main job on embedded defaults: sample data → Dagster → validated LeRobot datasets,
#               then the streaming path (embedded Redis unless REDIS_URL is set, a real dagster-daemon)
#   make test   the whole test suite (real Redis, real Dagster instance and daemon, real PyAV)
#   make lint   ruff over the repository, mypy --strict over the plain-Python core (seconds)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint ui bench bench-smoke bytecode clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The package's compiled bytecode, brought up to date (only changed files). An editable install's modules are
# otherwise compiled again at every process start wherever PYTHONDONTWRITEBYTECODE is set (common in Docker
# images, set on our CI machines): ~35 ms per CLI call, ~160 ms per Dagster run worker and code server.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q lerobot_pipeline

demo: bytecode
	$(BIN)/lerobot-pipeline demo --dir .demo
	$(BIN)/lerobot-pipeline stream-demo --dir .demo_stream

# test files in parallel processes (pytest-xdist; a file's tests stay together, so a file's shared daemon
# or dataset is built once). Most of the suite waits on daemons and subprocesses: 2 fills 2 cores.
TEST_JOBS ?= 2
test: bytecode
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile

lint: $(STAMP)   # config: [tool.ruff] and [tool.mypy] in pyproject.toml
	$(BIN)/ruff check .
	$(BIN)/mypy --strict lerobot_pipeline/core

ui: bytecode   # the Dagster UI on the demo's instance: http://127.0.0.1:3000
	DAGSTER_HOME=$(CURDIR)/.demo/dagster_home LEROBOT_PIPELINE_WORK_DIR=$(CURDIR)/.demo/work \
		$(BIN)/dagster dev -w workspace.yaml

# Benchmarks: each comparison side by side in one run; figures and pass/fail against issue 7's targets.
# REAL names a raw root of real recordings (default: ../shared/fixtures/airbot_real when present).
REAL ?= $(wildcard ../shared/fixtures/airbot_real)
bench: bytecode
	$(BIN)/python bench/bench_throughput.py $(if $(REAL),--raw $(REAL))
	$(BIN)/python bench/bench_backfill.py $(if $(REAL),--raw $(REAL))
	$(BIN)/python bench/bench_backfill.py --episodes 6 --seconds 10
	$(BIN)/python bench/bench_step_cost.py
	$(BIN)/python bench/bench_stream_latency.py --episodes 10 --seconds 10
	$(BIN)/python bench/bench_scale.py
	$(BIN)/python bench/bench_v30_append.py
	$(BIN)/python bench/bench_workers.py
	$(if $(REAL),$(BIN)/python bench/bench_jpeg_check.py $(REAL))

bench-smoke: bytecode   # seconds each: keeps every benchmark alive (CI)
	$(BIN)/python bench/bench_throughput.py --smoke
	$(BIN)/python bench/bench_backfill.py --smoke
	$(BIN)/python bench/bench_step_cost.py --smoke
	$(BIN)/python bench/bench_stream_latency.py --smoke
	$(BIN)/python bench/bench_scale.py --smoke
	$(BIN)/python bench/bench_v30_append.py --smoke
	$(BIN)/python bench/bench_workers.py --smoke
	rm -rf .bench_smoke && $(BIN)/lerobot-pipeline sample-data .bench_smoke --episodes 1 --seconds 1 --size 64x48 >/dev/null
	$(BIN)/python bench/bench_jpeg_check.py .bench_smoke && rm -rf .bench_smoke

clean:
	rm -rf .demo .demo_stream .lerobot_pipeline
