# Two commands do everything on a fresh machine (Python 3.10+ with venv):
#   make demo   the main job on embedded defaults: sample data → Dagster → validated LeRobot datasets,
#               then the streaming path (embedded Redis unless REDIS_URL is set, a real dagster-daemon)
#   make test   the whole test suite (real Redis, real Dagster instance and daemon, real PyAV)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test ui bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lerobot-pipeline demo --dir .demo
	$(BIN)/lerobot-pipeline stream-demo --dir .demo_stream

test: $(STAMP)
	$(BIN)/python -m pytest -q

ui: $(STAMP)   # the Dagster UI on the demo's instance: http://127.0.0.1:3000
	DAGSTER_HOME=$(CURDIR)/.demo/dagster_home LEROBOT_PIPELINE_WORK_DIR=$(CURDIR)/.demo/work \
		$(BIN)/dagster dev -w workspace.yaml

bench: $(STAMP)
	$(BIN)/python bench/bench_convert.py

clean:
	rm -rf .demo .demo_stream .lerobot_pipeline
