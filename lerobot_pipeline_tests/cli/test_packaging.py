"""Installable and conventional: shipped configs found through the package, `init`, --version,
python -m, the published JSON schemas, rich progress and the watch view."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from importlib import metadata, resources
from pathlib import Path

import pytest
import yaml

from lerobot_pipeline import __version__
from lerobot_pipeline.cli import main
from lerobot_pipeline.cli.progress import Progress
from lerobot_pipeline.cli.scaffold import schema_text
from lerobot_pipeline.cli.watch import watch
from lerobot_pipeline.config import load_config
from lerobot_pipeline.shipped import STRATEGY_CONFIGS, configs_dir, workspace_file
from lerobot_pipeline.streaming.settings import load_redis_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_shipped_configs_are_package_data():
    root = configs_dir()
    assert root == Path(str(resources.files("lerobot_pipeline.configs")))
    for name in (*STRATEGY_CONFIGS, "redis.yaml", "dagster.yaml", "workspace.yaml"):
        assert (root / name).is_file(), name
    assert load_config(root / "dual_arm_window.yaml").alignment.strategy == "window"


def test_checkout_workspace_matches_the_shipped_one():
    assert yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text()) == yaml.safe_load(workspace_file().read_text())


def test_init_writes_the_files_and_refuses_to_overwrite(tmp_path, capsys):
    lab = tmp_path / "lab"
    assert main(["init", str(lab)]) == 0
    written = sorted(str(p.relative_to(lab)) for p in lab.rglob("*") if p.is_file())
    assert written == ["configs/dual_arm_chunking.yaml", "configs/dual_arm_nearest.yaml",
                       "configs/dual_arm_window.yaml",
                       "configs/redis.yaml", "dagster_home/dagster.yaml", "workspace.yaml"]
    shipped = (configs_dir() / "dual_arm_nearest.yaml").read_text()
    assert (lab / "configs" / "dual_arm_nearest.yaml").read_text() == shipped
    assert load_config(lab / "configs" / "dual_arm_chunking.yaml").alignment.strategy == "chunking"
    assert load_redis_settings(lab / "configs" / "redis.yaml", env={}).stream_key == "lerobot_pipeline:episodes"
    assert f"dagster dev -w {lab / 'workspace.yaml'}" in capsys.readouterr().out

    edited = lab / "configs" / "dual_arm_window.yaml"
    edited.write_text("alignment:\n  strategy: window\n  window_ms: 33\n")
    assert main(["init", str(lab)]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and "configs/dual_arm_window.yaml" in err
    assert load_config(edited).alignment.window_ms == 33  # the lab's edit survived

    assert main(["init", str(lab), "--force"]) == 0
    assert load_config(edited).alignment.window_ms == 20


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"lerobot-pipeline {__version__}"
    assert metadata.version("lerobot_pipeline") == __version__  # pyproject reads the same attribute


def test_python_dash_m_version():
    out = subprocess.run([sys.executable, "-m", "lerobot_pipeline", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"lerobot-pipeline {__version__}"


def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "Exit codes:" in out and "130" in out


@pytest.mark.parametrize("which, name", [("pipeline", "config.schema.json"), ("redis", "redis.schema.json")])
def test_published_schema_is_up_to_date(which, name):
    committed = (REPO_ROOT / "docs" / name).read_text()
    assert committed == schema_text(which), f"regenerate: lerobot-pipeline config-schema {which} -o docs/{name}"
    schema = json.loads(committed)
    assert schema["additionalProperties"] is False


def test_schema_names_constraints_and_the_agreed_keys():
    schema = json.loads(schema_text("pipeline"))
    defs = schema["$defs"]
    assert defs["VideoConfig"]["properties"]["crf"]["maximum"] == 63
    assert defs["SyncConfig"]["properties"]["long_gap_policy"]["enum"] == ["split", "reject"]
    assert defs["OutputConfig"]["properties"]["format"]["enum"] == ["v2.1", "v3.0"]


def test_config_schema_command_writes_a_file(tmp_path):
    out = tmp_path / "s.json"
    assert main(["config-schema", "redis", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["title"] == "lerobot_pipeline Redis streaming settings"


def test_progress_plain_lines_with_rate_and_eta():
    stream = io.StringIO()
    bar = Progress(3, "convert", stream)
    for i in range(3):
        bar.step(f"episode {i}")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("convert [1/3] episode 0  (")
    assert all("/s, eta " in line for line in lines) and "\x1b" not in stream.getvalue()


def test_progress_bar_on_a_terminal():
    stream = FakeTerminal()
    with Progress(2, "backfill", stream) as bar:
        bar.step("run 1")
        bar.step("run 2")
    text = stream.getvalue()
    assert "backfill" in text and "2/2" in text and "/s" in text and "eta" in text
    assert "\x1b[" in text  # drawn with terminal control codes


def test_watch_plain_when_piped_writes_only_changes():
    views = iter(["a 1", "a 1", "a 2"])
    stream = io.StringIO()
    watch(lambda: next(views), lambda: "HEADER", interval=0, iterations=3, stream=stream)
    assert stream.getvalue() == "HEADER\na 1\nHEADER\na 2\n"


def test_watch_redraws_in_place_on_a_terminal():
    views = iter(["state one", "state two"])
    stream = FakeTerminal()
    watch(lambda: next(views), lambda: "HEADER", interval=0, iterations=2, stream=stream)
    text = stream.getvalue()
    assert "state two" in text
    assert text.count("\x1b[1A") >= 1 and "\x1b[2K" in text  # cursor up + erase line: redrawn in place


def test_the_wheel_ships_configs_templates_and_py_typed(tmp_path):
    """Builds the wheel (a few seconds); .ci/wheel_install goes on to install and use it."""
    import shutil
    import zipfile

    src = tmp_path / "src"  # a copy: an in-tree build/ would leak stale modules into the next wheel
    shutil.copytree(REPO_ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                                  ".demo*", ".lerobot_pipeline", ".pytest_cache"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("lerobot_pipeline-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (*STRATEGY_CONFIGS, "redis.yaml", "dagster.yaml", "workspace.yaml", "__init__.py"):
        assert f"lerobot_pipeline/configs/{name}" in names
    assert "lerobot_pipeline/py.typed" in names
    for module in ("__init__", "joints", "cameras"):  # a subpackage: find_packages must still pick it up
        assert f"lerobot_pipeline/sample_data/{module}.py" in names
    assert not [n for n in names if n.startswith(("lerobot_pipeline_tests/", "configs/", "bench/"))]
