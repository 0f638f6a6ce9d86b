"""Rules for ids that arrive from outside and the paths built from them (ids.py)."""

from __future__ import annotations

import os

import pytest

from lerobot_pipeline.errors import InvalidIdError
from lerobot_pipeline.ids import (
    episode_key,
    parse_episode_key,
    safe_join,
    validate_episode_id,
    validate_source,
    validate_strategy,
)


@pytest.mark.parametrize("value", ["episode_0007", "ep-1", "A", "ep.1.2", "9", "x" * 128])
def test_valid_episode_ids(value):
    assert validate_episode_id(value) == value


@pytest.mark.parametrize("value", [
    "..", "../x", "ep..1", "a/b", "a\\b", "ep|1", "ep,1", "ep 1", " ep", "ep\t1", "", "x" * 129, "x" * 200,
    ".hidden", "_ep", "-ep", "ep.", "ep\n", "ep\x00", "épisode", None, 7,
])
def test_invalid_episode_ids(value):
    with pytest.raises(InvalidIdError):
        validate_episode_id(value)


@pytest.mark.parametrize("value", ["robot_1", "rig-2", "R"])
def test_valid_sources(value):
    assert validate_source(value) == value


@pytest.mark.parametrize("value", ["robot.1", "", "a b", "a/b", "..", "x" * 65, "_r", "robot_1\n"])
def test_invalid_sources(value):
    with pytest.raises(InvalidIdError):
        validate_source(value)


def test_episode_keys_round_trip():
    key = episode_key("robot_1", "episode.0007")
    assert key == "robot_1.episode.0007"
    assert parse_episode_key(key) == ("robot_1", "episode.0007")
    for bad in ("robot_1", "robot 1.ep", "robot_1.", "robot_1...x", "robot_1.ep\n"):
        with pytest.raises(InvalidIdError):
            parse_episode_key(bad)


def test_strategies():
    assert validate_strategy("window") == "window"
    with pytest.raises(InvalidIdError, match="unknown strategy"):
        validate_strategy("closest")


def test_safe_join_stays_under_the_root(tmp_path):
    assert safe_join(tmp_path, "joints", "task", "episode_0001") == tmp_path.resolve() / "joints/task/episode_0001"


@pytest.mark.parametrize("parts", [("..",), ("a", ".."), ("a/../..",), ("/etc",), ("",), (".",), ("a\\b",),
                                   ("a\x00b",)])
def test_safe_join_refuses_escaping_components(tmp_path, parts):
    with pytest.raises(InvalidIdError):
        safe_join(tmp_path / "root", *parts)


def test_safe_join_refuses_a_symlink_out_of_the_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "link")
    with pytest.raises(InvalidIdError, match="escapes"):
        safe_join(root, "link", "x")


def test_errors_survive_the_trip_from_a_worker_process():
    """Video workers send errors back by pickle; an error that cannot be rebuilt breaks the whole pool."""
    import pickle

    from lerobot_pipeline.errors import ConfigError, EpisodeRejected, RawDataError, UndecodableImage

    for err in (RawDataError("local.ep", "bad size", file="/x/1.jpg", field="cam_left"),
                UndecodableImage("local.ep", "cam_right", "/x/2.jpg", "not a decodable JPEG"),
                EpisodeRejected("local.ep", "too short"), ConfigError("video.crf", "expected an integer")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
    back = pickle.loads(pickle.dumps(UndecodableImage("local.ep", "cam_right", "/x/2.jpg", "r")))
    assert (back.camera, back.file_name, back.field) == ("cam_right", "2.jpg", "cam_right")
