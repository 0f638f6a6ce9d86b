"""Conversion configuration: frozen pydantic models loaded from YAML, validated key by key.

Unknown keys, wrong types and impossible values raise :class:`ConfigError` naming the dotted key.
Every key can be overridden with ``apply_overrides(cfg, {"alignment.window_ms": 30})`` (the CLI's
``--set KEY=VALUE`` and its named flags end up here); string override values are read by the
schema: as they are where a string is expected (``video.preset=8``), as YAML otherwise.
The JSON schema of a config file: ``lerobot-pipeline config-schema`` (docs/config.schema.json).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BeforeValidator, Field, StrictBool, StrictInt, StrictStr

from lerobot_pipeline.errors import ConfigError
from lerobot_pipeline.strict_model import (
    Number,
    PositionalModel,
    StrictModel,
    allows_none,
    annotation_at,
    cross_checks_enabled,
    takes_plain_string,
    validate,
)

Strategy = Literal["nearest", "chunking", "window"]
DEFAULT_JOINT_COLUMNS = (
    "joint1_pos", "joint2_pos", "joint3_pos", "joint4_pos", "joint5_pos", "joint6_pos",
    "eef_gripper_joint_pos",
)
MAX_EPISODE_SEC = 1020  # LeRobot's float32 timestamps break past 1024 s


def _number_as_string(value: Any) -> Any:
    """Encoder presets are names for some codecs (``medium``) and numbers for others (SVT-AV1 ``8``)."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _options_as_strings(value: Any) -> Any:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else value


def _camera_name(name: str) -> str:
    if not name or "/" in name:
        raise ValueError(f"invalid camera name {name!r}")
    return name


class ArmConfig(PositionalModel):
    name: StrictStr
    file: StrictStr = Field(description="parquet file of this arm inside an episode's joints directory")
    role: Literal["slave", "master"]


class RobotConfig(StrictModel):
    type: StrictStr = "dual_arm"
    arms: tuple[ArmConfig, ...] = (
        ArmConfig(name="left_slave", file="left_slave.parquet", role="slave"),
        ArmConfig(name="left_master", file="left_master.parquet", role="master"),
        ArmConfig(name="right_slave", file="right_slave.parquet", role="slave"),
        ArmConfig(name="right_master", file="right_master.parquet", role="master"),
    )
    joints_per_arm: StrictInt = Field(7, gt=0)
    joint_columns: tuple[StrictStr, ...] = DEFAULT_JOINT_COLUMNS
    timestamp_sec_column: StrictStr = "timestamp_sec"
    timestamp_nanosec_column: StrictStr = "timestamp_nanosec"

    def arms_by_role(self, role: str) -> tuple[ArmConfig, ...]:
        return tuple(a for a in self.arms if a.role == role)


class CameraConfig(PositionalModel):
    name: Annotated[StrictStr, pydantic.AfterValidator(_camera_name)]
    role: Literal["base", "sync", "downsample"]
    target_fps: StrictInt = Field(25, gt=0)


class SyncConfig(StrictModel):
    """How cameras are put on one timeline and what happens to frames without a partner."""

    tolerance_ms: Number = Field(20.0, gt=0)
    gap_policy: Literal["fill", "split", "reject"] = "fill"
    max_fill_ms: Number = Field(120.0, ge=0, description="fill bounded to ~3 frames; longer gaps use long_gap_policy")
    long_gap_policy: Literal["split", "reject"] = Field(
        "split", description="what 'fill' falls back to past max_fill_ms")
    max_episode_sec: Number = Field(1000.0, gt=0, le=MAX_EPISODE_SEC,
                                    description="below LeRobot's float32 timestamp limit (~1024 s)")


class AlignmentConfig(StrictModel):
    strategy: Strategy = "chunking"
    chunk_size: StrictInt = Field(10, gt=0)
    chunk_step_ms: Number | None = Field(None, gt=0, description="null: one joint sample per step")
    padding_mode: Literal["repeat", "zeros"] = "repeat"
    window_ms: Number = Field(20.0, gt=0)
    aggregation: Literal["mean", "median"] = "mean"
    tolerance_ms: Number = Field(20.0, gt=0)


class FilteringConfig(StrictModel):
    min_duration_sec: Number = Field(0.5, ge=0)
    require_all_cameras: StrictBool = True


class VideoConfig(StrictModel):
    codec: StrictStr = "h264"
    crf: StrictInt = Field(23, ge=0, le=63)
    preset: Annotated[StrictStr | None, BeforeValidator(_number_as_string)] = "medium"
    gop: StrictInt = Field(2, gt=0)
    pix_fmt: StrictStr = "yuv420p"
    extra_options: Annotated[dict[str, str], BeforeValidator(_options_as_strings)] = Field(default_factory=dict)


class OutputConfig(StrictModel):
    base_path: StrictStr = "./lerobot_dataset"
    dataset_name: StrictStr = "airbot_play_dual_arm"
    task: StrictStr | None = Field(None, description="null: the raw task directory name, underscores as spaces")
    robot_type: StrictStr = "airbot_play"
    chunks_size: StrictInt = Field(1000, gt=0)
    format: Literal["v2.1", "v3.0"] = "v2.1"
    data_files_size_in_mb: StrictInt = Field(100, gt=0, description="v3.0: bound of one data file")
    video_files_size_in_mb: StrictInt = Field(200, gt=0, description="v3.0: bound of one video file")


class InputConfig(StrictModel):
    raw_root: StrictStr | None = None
    source: StrictStr = "local"


class PipelineConfig(StrictModel):
    """One conversion config (``configs/dual_arm_<strategy>.yaml``)."""

    model_config = pydantic.ConfigDict(title="lerobot_pipeline conversion config")

    robot: RobotConfig = Field(default_factory=RobotConfig)
    cameras: tuple[CameraConfig, ...] = (
        CameraConfig(name="cam_left", role="base"),
        CameraConfig(name="cam_right", role="sync"),
        CameraConfig(name="cam_head", role="downsample"),
    )
    sync: SyncConfig = Field(default_factory=SyncConfig)
    alignment: AlignmentConfig = Field(default_factory=AlignmentConfig)
    filtering: FilteringConfig = Field(default_factory=FilteringConfig)
    video: VideoConfig = Field(default_factory=VideoConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    input: InputConfig = Field(default_factory=InputConfig)

    @property
    def fps(self) -> int:
        return self.base_camera.target_fps

    @property
    def base_camera(self) -> CameraConfig:
        return next(c for c in self.cameras if c.role == "base")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = json.loads(self.model_dump_json())
        return d

    def digest(self) -> str:
        """Short hash of everything that changes the converted data (not where it is written)."""
        d = self.to_dict()
        d.pop("output", None)
        d.pop("input", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    @pydantic.model_validator(mode="after")
    def _cross_checks(self, info: pydantic.ValidationInfo) -> PipelineConfig:
        if cross_checks_enabled(info):
            _check(self)
        return self


def _check(cfg: PipelineConfig) -> None:
    """Rules across keys; the keys they name are absolute (a nested model does not know its path)."""
    r = cfg.robot
    if not r.arms:
        raise ConfigError("robot.arms", "at least one arm is required")
    names = [a.name for a in r.arms]
    if len(set(names)) != len(names):
        raise ConfigError("robot.arms", f"arm names must be unique, got {names}")
    for role in ("slave", "master"):
        if not r.arms_by_role(role):
            raise ConfigError("robot.arms", f"no arm with role '{role}'")
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
    fps = {c.target_fps for c in cams}
    if len(fps) != 1:
        raise ConfigError("cameras", f"all cameras must share one target_fps (the dataset fps), got {sorted(fps)}")


# ----------------------------------------------------------------------------- loading / overrides


def _build(cls: type[pydantic.BaseModel], data: Any, prefix: str) -> Any:
    """Structure and types of ``data`` as ``cls`` (no rules across keys); :class:`ConfigError` otherwise."""
    return validate(cls, data, prefix, cross_checks=False)


def config_from_dict(data: dict[str, Any] | None) -> PipelineConfig:
    cfg: PipelineConfig = validate(PipelineConfig, data or {})
    return cfg


def config_schema() -> dict[str, Any]:
    """JSON schema of a config file (what editors validate ``configs/*.yaml`` with)."""
    return PipelineConfig.model_json_schema()


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read a YAML file (or the built-in defaults when ``path`` is None) and apply dotted overrides."""
    data: dict[str, Any] = {}
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


def merge_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``{"a.b": v}`` overrides set (string values read by the schema)."""
    out = json.loads(json.dumps(data)) if data else {}
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        value = parse_override(parts, value)
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


def parse_override(parts: list[str], value: Any) -> Any:
    """A ``--set`` value read as YAML, except that where the schema takes any string, a value YAML
    would read as something else (``8``, ``yes``) stays the string as typed (``null`` is None where allowed)."""
    if not isinstance(value, str):
        return value
    tp = annotation_at(PipelineConfig, parts)
    try:
        parsed = yaml.safe_load(value) if value != "" else value
    except (yaml.YAMLError, ValueError):  # ValueError: YAML dates such as 2001-02-30 (found by fuzzing)
        return value
    if tp is not None and takes_plain_string(tp) and not isinstance(parsed, str):
        return None if parsed is None and allows_none(tp) else value  # 8, true, a: b -> the string as typed
    return parsed


def apply_overrides(cfg: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    return config_from_dict(merge_overrides(cfg.to_dict(), overrides))
