"""Configuration loading and validation (config.py): every error names its dotted key."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from lerobot_pipeline.config import PipelineConfig, apply_overrides, load_config
from lerobot_pipeline.errors import ConfigError

CONFIGS = Path(__file__).parents[2] / "configs"
BASE = {"name": "cam_left", "role": "base", "target_fps": 25}


def config_error(overrides: dict) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=overrides)
    return exc.value


@pytest.mark.parametrize("strategy", ["nearest", "chunking", "window"])
def test_shipped_configs_load(strategy):
    cfg = load_config(CONFIGS / f"dual_arm_{strategy}.yaml")
    assert cfg.alignment.strategy == strategy
    assert [a.name for a in cfg.robot.arms] == ["left_slave", "left_master", "right_slave", "right_master"]
    assert [(c.name, c.role) for c in cfg.cameras] == [("cam_left", "base"), ("cam_right", "sync"),
                                                      ("cam_head", "downsample")]
    assert cfg.fps == 25 and cfg.base_camera.name == "cam_left"
    assert cfg.output.base_path == f"./lerobot_dataset_dual_{strategy}"
    assert (cfg.video.codec, cfg.video.gop, cfg.video.pix_fmt) == ("h264", 2, "yuv420p")
    assert len(cfg.robot.joint_columns) == cfg.robot.joints_per_arm == 7


def test_defaults_and_overrides():
    cfg = load_config()
    assert cfg == PipelineConfig()
    cfg2 = apply_overrides(cfg, {"alignment.window_ms": "30", "alignment.chunk_step_ms": "null",
                                 "sync.gap_policy": "split"})
    assert (cfg2.alignment.window_ms, cfg2.alignment.chunk_step_ms, cfg2.sync.gap_policy) == (30.0, None, "split")
    assert cfg.alignment.window_ms == 20.0  # the original is unchanged
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.alignment.window_ms = 1  # type: ignore[misc]


def test_overrides_apply_on_top_of_a_file():
    cfg = load_config(CONFIGS / "dual_arm_window.yaml", {"alignment.aggregation": "median", "video.crf": 30})
    assert (cfg.alignment.strategy, cfg.alignment.aggregation, cfg.video.crf) == ("window", "median", 30)


def test_digest_tracks_the_data_not_the_destination():
    cfg = load_config()
    assert apply_overrides(cfg, {"output.base_path": "/elsewhere"}).digest() == cfg.digest()
    assert apply_overrides(cfg, {"alignment.window_ms": 25}).digest() != cfg.digest()


@pytest.mark.parametrize("overrides, key", [
    ({"bogus": 1}, "bogus"),
    ({"alignment.windw_ms": 30}, "alignment.windw_ms"),
    ({"robot.arms": [{"name": "a", "file": "a.parquet", "role": "slave", "colour": "red"}]}, "robot.arms[0].colour"),
])
def test_unknown_keys_are_named(overrides, key):
    e = config_error(overrides)
    assert e.key == key and f"'{key}'" in str(e) and "unknown key" in str(e)


def test_unknown_key_in_a_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("video:\n  codec: h264\n  bitrate: 5M\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.key == "video.bitrate"


@pytest.mark.parametrize("overrides, key", [
    ({"alignment.chunk_size": "ten"}, "alignment.chunk_size"),
    ({"alignment.chunk_size": 10.5}, "alignment.chunk_size"),
    ({"alignment.tolerance_ms": True}, "alignment.tolerance_ms"),
    ({"alignment.tolerance_ms": "fast"}, "alignment.tolerance_ms"),
    ({"filtering.require_all_cameras": "sometimes"}, "filtering.require_all_cameras"),
    ({"filtering.require_all_cameras": 1}, "filtering.require_all_cameras"),
    ({"cameras": "cam_left"}, "cameras"),
    ({"video.extra_options": ["a"]}, "video.extra_options"),
    ({"robot.arms": [{"name": 3, "file": "a.parquet", "role": "slave"}]}, "robot.arms[0].name"),
    ({"alignment": 5}, "alignment"),
])
def test_wrong_types_are_named(overrides, key):
    assert config_error(overrides).key == key


@pytest.mark.parametrize("overrides, key", [
    ({"alignment.strategy": "closest"}, "alignment.strategy"),
    ({"alignment.padding_mode": "edge"}, "alignment.padding_mode"),
    ({"alignment.aggregation": "max"}, "alignment.aggregation"),
    ({"sync.gap_policy": "drop"}, "sync.gap_policy"),
    ({"cameras": [BASE, {"name": "c2", "role": "primary"}]}, "cameras[1].role"),
])
def test_bad_literals_are_named(overrides, key):
    e = config_error(overrides)
    assert e.key == key and "is not one of" in str(e)


def test_missing_required_key_is_named():
    assert config_error({"cameras": [{"role": "base"}]}).key == "cameras[0].name"


@pytest.mark.parametrize("overrides, key", [
    ({"video.crf": 99}, "video.crf"),
    ({"video.crf": -1}, "video.crf"),
    ({"video.gop": 0}, "video.gop"),
    ({"alignment.window_ms": -5}, "alignment.window_ms"),
    ({"alignment.window_ms": 0}, "alignment.window_ms"),
    ({"alignment.chunk_size": 0}, "alignment.chunk_size"),
    ({"alignment.chunk_step_ms": -4}, "alignment.chunk_step_ms"),
    ({"alignment.tolerance_ms": -1}, "alignment.tolerance_ms"),
    ({"sync.tolerance_ms": 0}, "sync.tolerance_ms"),
    ({"sync.max_episode_sec": 2000}, "sync.max_episode_sec"),
    ({"filtering.min_duration_sec": -0.1}, "filtering.min_duration_sec"),
    ({"output.chunks_size": 0}, "output.chunks_size"),
    ({"cameras": [BASE, {"name": "cam_right", "role": "base", "target_fps": 25}]}, "cameras"),
    ({"cameras": [{"name": "cam_right", "role": "sync"}]}, "cameras"),
    ({"cameras": [BASE, {"name": "cam_head", "role": "downsample", "target_fps": 30}]}, "cameras"),
    ({"cameras": [BASE, {"name": "cam_left", "role": "sync"}]}, "cameras"),
    ({"cameras": [BASE, {"name": "a/b", "role": "sync"}]}, "cameras[1].name"),
    ({"cameras": []}, "cameras"),
    ({"robot.joint_columns": ["joint1_pos", "joint2_pos"]}, "robot.joint_columns"),
    ({"robot.joints_per_arm": 0}, "robot.joints_per_arm"),
    ({"robot.arms": [{"name": "a", "file": "a.parquet", "role": "slave"}]}, "robot.arms"),
    ({"robot.arms": [{"name": "a", "file": "a.parquet", "role": "slave"},
                     {"name": "a", "file": "b.parquet", "role": "master"}]}, "robot.arms"),
])
def test_impossible_values_are_named(overrides, key):
    assert config_error(overrides).key == key


def test_min_duration_zero_and_single_camera_are_allowed():
    cfg = load_config(overrides={"filtering.min_duration_sec": 0, "cameras": [BASE]})
    assert cfg.filtering.min_duration_sec == 0 and [c.name for c in cfg.cameras] == ["cam_left"]


def test_joint_columns_follow_joints_per_arm():
    cfg = load_config(overrides={"robot.joints_per_arm": 2, "robot.joint_columns": ["a_pos", "b_pos"]})
    assert cfg.robot.joint_columns == ("a_pos", "b_pos")


def test_override_below_a_scalar_is_named():
    assert config_error({"video.crf.value": 3}).key == "video.crf"


def test_unreadable_or_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read") as exc:
        load_config(tmp_path / "absent.yaml")
    assert exc.value.key == "<file>"
    bad = tmp_path / "bad.yaml"
    bad.write_text("alignment: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(top)


@pytest.mark.parametrize("raw, expected", [
    ("8", "8"),                # a YAML number where the schema wants a string
    ("'8'", "8"),
    ('"medium"', "medium"),    # the named flags pass JSON-quoted strings
    ("veryslow", "veryslow"),
    ("yes", "yes"),            # a YAML boolean where the schema wants a string
    ("null", None),            # preset is optional: null clears it
])
def test_set_values_are_read_by_the_schema_for_strings(raw, expected):
    assert load_config(overrides={"video.preset": raw}).video.preset == expected


def test_set_values_are_read_by_the_schema_for_other_types():
    from lerobot_pipeline.cli.convert import parse_set

    cfg = load_config(overrides=parse_set([
        "filtering.require_all_cameras=false", "video.crf=30", "alignment.window_ms=12.5",
        "alignment.chunk_step_ms=null",
        "robot.joints_per_arm=2", "robot.joint_columns=[a_pos, b_pos]", "output.task=stack the cups",
        "output.format=v3.0",
        "video.extra_options={tune: film, threads: 2}",
    ]))
    assert cfg.filtering.require_all_cameras is False and cfg.video.crf == 30 and cfg.alignment.window_ms == 12.5
    assert cfg.alignment.chunk_step_ms is None and cfg.robot.joint_columns == ("a_pos", "b_pos")
    assert (cfg.output.task, cfg.output.format) == ("stack the cups", "v3.0")
    assert cfg.video.extra_options == {"tune": "film", "threads": "2"}
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=parse_set(["video.crf=fast"]))
    assert exc.value.key == "video.crf" and "expected an integer" in str(exc.value)


def test_a_numeric_preset_in_a_yaml_file_is_a_string(tmp_path):
    path = tmp_path / "svt.yaml"
    path.write_text("video:\n  codec: libsvtav1\n  preset: 8\n")
    assert load_config(path).video.preset == "8"


def test_agreed_keys_and_their_defaults():
    cfg = load_config()
    assert (cfg.sync.max_fill_ms, cfg.sync.long_gap_policy) == (120.0, "split")
    out = cfg.output
    assert (out.format, out.data_files_size_in_mb, out.video_files_size_in_mb) == ("v2.1", 100, 200)


@pytest.mark.parametrize("overrides, key, words", [
    ({"sync.long_gap_policy": "fill"}, "sync.long_gap_policy", "is not one of 'split' or 'reject'"),
    ({"output.format": "v4.0"}, "output.format", "is not one of"),
    ({"output.data_files_size_in_mb": 0}, "output.data_files_size_in_mb", "must be > 0, got 0"),
    ({"sync.max_fill_ms": -1}, "sync.max_fill_ms", "must be >= 0"),
    ({"video.crf": 99}, "video.crf", "must be <= 63, got 99"),
    ({"video.codecs": "h264"}, "video.codecs", "unknown key (known keys here: codec, crf, extra_options, gop,"),
])
def test_messages_name_the_key_and_the_rule(overrides, key, words):
    e = config_error(overrides)
    assert e.key == key and str(e).startswith(f"config key '{key}': ") and words in str(e)


def test_digest_is_stable_for_the_same_effective_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("alignment:\n  window_ms: 20\nvideo:\n  crf: 23\n")  # the defaults, written out
    assert load_config(path).digest() == load_config().digest() == PipelineConfig().digest()
    # pinned: datasets store it in their provenance; a change here re-keys every existing dataset
    assert load_config().digest() == "a9d0128b9800"
