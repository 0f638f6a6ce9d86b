"""Conversion configuration: frozen dataclasses loaded from YAML, validated key by key.

Unknown keys, wrong types and impossible values raise :class:`ConfigError` naming the dotted key.
Every key can be overridden with ``apply_overrides(cfg, {"alignment.window_ms": 30})`` (the CLI's
``--set KEY=VALUE`` and its named flags end up here).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from lerobot_pipeline.errors import ConfigError

Strategy = Literal["nearest", "chunking", "window"]
DEFAULT_JOINT_COLUMNS = (
    "joint1_pos", "joint2_pos", "joint3_pos", "joint4_pos", "joint5_pos", "joint6_pos",
    "eef_gripper_joint_pos",
)


@dataclass(frozen=True)
class ArmConfig:
    name: str
    file: str
    role: Literal["slave", "master"]


@dataclass(frozen=True)
class RobotConfig:
    type: str = "dual_arm"
    arms: tuple[ArmConfig, ...] = (
        ArmConfig("left_slave", "left_slave.parquet", "slave"),
        ArmConfig("left_master", "left_master.parquet", "master"),
        ArmConfig("right_slave", "right_slave.parquet", "slave"),
        ArmConfig("right_master", "right_master.parquet", "master"),
    )
    joints_per_arm: int = 7
    joint_columns: tuple[str, ...] = DEFAULT_JOINT_COLUMNS
    timestamp_sec_column: str = "timestamp_sec"
    timestamp_nanosec_column: str = "timestamp_nanosec"

    def arms_by_role(self, role: str) -> tuple[ArmConfig, ...]:
        return tuple(a for a in self.arms if a.role == role)


@dataclass(frozen=True)
class CameraConfig:
    name: str
    role: Literal["base", "sync", "downsample"]
    target_fps: int = 25


@dataclass(frozen=True)
class SyncConfig:
    """How cameras are put on one timeline and what happens to frames without a partner."""

    tolerance_ms: float = 20.0
    gap_policy: Literal["fill", "split", "reject"] = "fill"
    max_episode_sec: float = 1000.0  # below LeRobot's float32 timestamp limit (~1024 s)


@dataclass(frozen=True)
class AlignmentConfig:
    strategy: Strategy = "chunking"
    chunk_size: int = 10
    chunk_step_ms: Optional[float] = None  # None: one joint sample per step
    padding_mode: Literal["repeat", "zeros"] = "repeat"
    window_ms: float = 20.0
    aggregation: Literal["mean", "median"] = "mean"
    tolerance_ms: float = 20.0


@dataclass(frozen=True)
class FilteringConfig:
    min_duration_sec: float = 0.5
    require_all_cameras: bool = True


@dataclass(frozen=True)
class VideoConfig:
    codec: str = "h264"
    crf: int = 23
    preset: Optional[str] = "medium"
    gop: int = 2
    pix_fmt: str = "yuv420p"
    extra_options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputConfig:
    base_path: str = "./lerobot_dataset"
    dataset_name: str = "airbot_play_dual_arm"
    task: Optional[str] = None  # None: the raw task directory name, underscores as spaces
    robot_type: str = "airbot_play"
    chunks_size: int = 1000


@dataclass(frozen=True)
class InputConfig:
    raw_root: Optional[str] = None
    source: str = "local"


@dataclass(frozen=True)
class PipelineConfig:
    robot: RobotConfig = field(default_factory=RobotConfig)
    cameras: tuple[CameraConfig, ...] = (
        CameraConfig("cam_left", "base"),
        CameraConfig("cam_right", "sync"),
        CameraConfig("cam_head", "downsample"),
    )
    sync: SyncConfig = field(default_factory=SyncConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    filtering: FilteringConfig = field(default_factory=FilteringConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    input: InputConfig = field(default_factory=InputConfig)

    @property
    def fps(self) -> int:
        return self.base_camera.target_fps

    @property
    def base_camera(self) -> CameraConfig:
        return next(c for c in self.cameras if c.role == "base")

    def to_dict(self) -> dict:
        return _to_plain(self)

    def digest(self) -> str:
        """Short hash of everything that changes the converted data (not where it is written)."""
        d = self.to_dict()
        d.pop("output", None)
        d.pop("input", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- building / validation


def _to_plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp, value, key: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(non_none[0], value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, f"{value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {type(value).__name__}")
        return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
        return {str(k): str(v) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    raise ConfigError(key, f"unsupported type {_type_name(tp)}")  # pragma: no cover


def _build(cls, data, prefix: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(prefix or "<root>", f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(where, f"unknown key (known keys here: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _coerce(hints[f.name], data[f.name], f"{prefix}.{f.name}" if prefix else f.name)
    missing = [
        f.name for f in dataclasses.fields(cls)
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{prefix}.{missing[0]}" if prefix else missing[0], "required key is missing")
    return cls(**kwargs)


def _check(cfg: PipelineConfig) -> PipelineConfig:
    def positive(key, value, allow_zero=False):
        if value is not None and (value < 0 or (value == 0 and not allow_zero)):
            raise ConfigError(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value}")

    r = cfg.robot
    if not r.arms:
        raise ConfigError("robot.arms", "at least one arm is required")
    names = [a.name for a in r.arms]
    if len(set(names)) != len(names):
        raise ConfigError("robot.arms", f"arm names must be unique, got {names}")
    for role in ("slave", "master"):
        if not r.arms_by_role(role):
            raise ConfigError("robot.arms", f"no arm with role '{role}'")
    positive("robot.joints_per_arm", r.joints_per_arm)
    if len(r.joint_columns) != r.joints_per_arm:
        raise ConfigError(
            "robot.joint_columns", f"has {len(r.joint_columns)} columns but joints_per_arm is {r.joints_per_arm}"
        )
    cams = cfg.cameras
    if not cams:
        raise ConfigError("cameras", "at least one camera is required")
    if [c.role for c in cams].count("base") != 1:
        raise ConfigError("cameras", "exactly one camera must have role 'base'")
    cam_names = [c.name for c in cams]
    if len(set(cam_names)) != len(cam_names):
        raise ConfigError("cameras", f"camera names must be unique, got {cam_names}")
    for i, c in enumerate(cams):
        positive(f"cameras[{i}].target_fps", c.target_fps)
        if "/" in c.name or not c.name:
            raise ConfigError(f"cameras[{i}].name", f"invalid camera name {c.name!r}")
    fps = {c.target_fps for c in cams}
    if len(fps) != 1:
        raise ConfigError("cameras", f"all cameras must share one target_fps (the dataset fps), got {sorted(fps)}")
    positive("sync.tolerance_ms", cfg.sync.tolerance_ms)
    positive("sync.max_episode_sec", cfg.sync.max_episode_sec)
    if cfg.sync.max_episode_sec > 1020:
        raise ConfigError("sync.max_episode_sec", "must stay below ~1020 s: LeRobot's float32 timestamps break past 1024 s")
    a = cfg.alignment
    positive("alignment.chunk_size", a.chunk_size)
    positive("alignment.chunk_step_ms", a.chunk_step_ms)
    positive("alignment.window_ms", a.window_ms)
    positive("alignment.tolerance_ms", a.tolerance_ms)
    positive("filtering.min_duration_sec", cfg.filtering.min_duration_sec, allow_zero=True)
    v = cfg.video
    if not 0 <= v.crf <= 63:
        raise ConfigError("video.crf", f"must be within 0..63, got {v.crf}")
    positive("video.gop", v.gop)
    positive("output.chunks_size", cfg.output.chunks_size)
    return cfg


def config_from_dict(data: dict | None) -> PipelineConfig:
    return _check(_build(PipelineConfig, data or {}, ""))


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read a YAML file (or the built-in defaults when ``path`` is None) and apply dotted overrides."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError("<file>", f"cannot read {p}: {e.strerror}") from e
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError("<file>", f"{p} is not valid YAML: {e}") from e
    data = merge_overrides(data, overrides or {})
    return config_from_dict(data)


def merge_overrides(data: dict, overrides: dict[str, Any]) -> dict:
    """Return a copy of ``data`` with ``{"a.b": v}`` overrides set (string values parsed as YAML)."""
    out = json.loads(json.dumps(data)) if data else {}
    for dotted, value in overrides.items():
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value) if value != "" else value
            except yaml.YAMLError:
                pass
        parts = dotted.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(".".join(parts[: i + 1]), "cannot set a sub-key of a non-mapping value")
            node = nxt
        node[parts[-1]] = value
    return out


def apply_overrides(cfg: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    return config_from_dict(merge_overrides(cfg.to_dict(), overrides))
