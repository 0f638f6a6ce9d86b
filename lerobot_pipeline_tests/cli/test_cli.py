"""The command line: help for every command, real conversions, one-line errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lerobot_pipeline.cli import build_parser, main
from lerobot_pipeline.sample_data import generate_dataset

COMMANDS = ["convert", "validate", "sample-data", "register", "materialize", "backfill", "demo",
            "publish", "monitor", "stream-demo", "init", "config-schema", "worker"]


def test_every_command_has_help(capsys):
    parser = build_parser()
    listed = parser._subparsers._group_actions[0].choices  # the registered sub-commands
    assert set(COMMANDS) == set(listed)
    for command in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([command, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: lerobot-pipeline {command}" in out and len(out) > 200


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "lerobot_pipeline", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "convert" in out.stdout and "Quick start" in out.stdout


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    generate_dataset(root, episodes=2, seconds=1.5, size=(64, 48), seed=3)
    return root


def test_convert_then_validate(raw, tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["convert", "--input", str(raw), "--output", str(out), "--strategy", "window", "--window-ms", "15",
               "--gop", "4", "--task", "fold the towel"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "converted:  2 recording(s) -> 2 episode(s)" in text and "utilisation" in text
    info = json.loads((out / "meta/info.json").read_text())
    assert info["total_episodes"] == 2 and info["features"]["action"]["shape"] == [14]
    assert json.loads((out / "meta/tasks.jsonl").read_text().splitlines()[0])["task"] == "fold the towel"
    assert main(["validate", str(out)]) == 0
    assert "VALID: 2 episodes" in capsys.readouterr().out


def test_convert_format_v30_then_validate(raw, tmp_path, capsys):
    out = tmp_path / "ds30"
    rc = main(["convert", "--input", str(raw), "--output", str(out), "--format", "v3.0"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "passed the v3.0 conformance check" in text
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 2
    assert (out / "data/chunk-000/file-000.parquet").is_file() and not (out / "meta/episodes.jsonl").exists()
    assert main(["validate", str(out)]) == 0
    assert "LeRobot v3.0 validation" in capsys.readouterr().out


def test_convert_one_episode_and_set_override(raw, tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["convert", "--input", str(raw), "--output", str(out), "--episode-id", "episode_0001",
               "--set", "alignment.chunk_size=4"])
    assert rc == 0, capsys.readouterr()
    info = json.loads((out / "meta/info.json").read_text())
    assert info["total_episodes"] == 1 and info["features"]["action"]["shape"] == [4, 14]


def test_unknown_config_key_is_a_one_line_error(raw, tmp_path, capsys):
    rc = main(["convert", "--input", str(raw), "--output", str(tmp_path / "ds"), "--set", "alignment.windw_ms=3"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().splitlines() == [err.strip()]  # one line, no traceback
    assert "alignment.windw_ms" in err and "unknown key" in err


def test_missing_input_and_unknown_episode(raw, tmp_path, capsys):
    assert main(["convert", "--output", str(tmp_path / "ds")]) == 2
    assert "input.raw_root" in capsys.readouterr().err
    assert main(["convert", "--input", str(raw), "--output", str(tmp_path / "ds"), "--episode-id", "episode_0042"]) == 2
    assert "episode_0042" in capsys.readouterr().err
    assert main(["convert", "--input", str(raw), "--output", str(tmp_path / "ds"), "--episode-id", "../etc"]) == 2
    assert "invalid episode id" in capsys.readouterr().err


def test_convert_refuses_to_replace_a_foreign_directory(raw, tmp_path, capsys):
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("hours of work")
    assert main(["convert", "--input", str(raw), "--output", str(foreign)]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (foreign / "thesis.tex").read_text() == "hours of work"


def test_failed_episode_is_named_and_exit_code_is_1(raw, tmp_path, capsys):
    broken = tmp_path / "raw"
    generate_dataset(broken, episodes=2, seconds=1.5, size=(64, 48), seed=4)
    bad = next((broken / "joints").rglob("episode_0001")) / "left_slave.parquet"
    bad.write_bytes(b"not a parquet file")
    rc = main(["convert", "--input", str(broken), "--output", str(tmp_path / "ds")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAILED:     local.episode_0001" in out and "left_slave.parquet" in out
    assert json.loads((tmp_path / "ds/meta/info.json").read_text())["total_episodes"] == 1


def test_validate_reports_a_broken_dataset(raw, tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["convert", "--input", str(raw), "--output", str(out)]) == 0
    info_path = out / "meta/info.json"
    info = json.loads(info_path.read_text())
    info["total_frames"] += 1
    info_path.write_text(json.dumps(info))
    capsys.readouterr()
    assert main(["validate", str(out)]) == 1
    assert "total_frames" in capsys.readouterr().out


def test_sample_data_bad_size(tmp_path, capsys):
    assert main(["sample-data", str(tmp_path / "x"), "--size", "big"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_public_api_imports_without_dagster():
    code = ("import sys, lerobot_pipeline; from lerobot_pipeline import publish_episode, convert_episode; "
            "import lerobot_pipeline.core.convert, lerobot_pipeline.streaming.publisher; "
            "print('dagster' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("argv", "starts"), [
    (["convert", "--input", "x", "--jobs", "2"], True),
    (["convert", "-j2", "--input", "x"], True),
    (["convert", "--jobs", "1"], False),  # videos encode inline: no workers to start
    (["convert", "--jobs", "two"], False),  # left for the real parser to report
    (["convert", "--help"], False),
    (["validate", "x"], False),
])
def test_convert_starts_its_video_workers_forkserver_before_its_own_imports(argv, starts):
    """The forkserver's PyAV/OpenCV imports run beside the CLI's own, not after them; nothing starts where no
    worker will run. Judged in a fresh interpreter, by the children it has right after the call."""
    code = ("import sys, psutil; from lerobot_pipeline.cli import start_video_workers_early; "
            f"start_video_workers_early({argv!r}); "
            "kids = [' '.join(p.cmdline()) for p in psutil.Process().children()]; "
            "print(any('forkserver' in k for k in kids), 'av' in sys.modules, 'cv2' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(starts), "False", "False"]  # and this process imported neither


def test_the_forkserver_preloads_the_module_the_video_workers_run():
    """multiprocessing skips a preload module it cannot import, silently: a wrong name would only be slow."""
    from lerobot_pipeline.core import camera_videos, forkserver

    assert forkserver.PRELOAD == camera_videos.__name__


def test_progress_imports_rich_only_to_draw_a_bar():
    """Plain lines to a pipe (scripts, CI, benchmarks) cost no rich import (~45 ms); a terminal gets the bar with
    its items-per-second column."""
    code = """
import io, sys
from lerobot_pipeline.cli.progress import Progress
piped = io.StringIO()
bar = Progress(2, 'convert', piped); bar.step('ep0'); bar.step('ep1')
print('piped', 'rich' in sys.modules, piped.getvalue().count('convert ['))
class Tty(io.StringIO):
    def isatty(self): return True
tty = Tty()
bar = Progress(2, 'convert', tty); bar.step('ep0'); bar.step('ep1')
print('tty', 'rich' in sys.modules, '2/2' in tty.getvalue() and '/s' in tty.getvalue())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["piped", "False", "2", "tty", "True", "True"]
