"""Commands that write project files: ``init`` (a lab's own directory) and ``config-schema``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from lerobot_pipeline.shipped import (
    DAGSTER_TEMPLATE,
    REDIS_CONFIG,
    STRATEGY_CONFIGS,
    WORKSPACE,
    dagster_template,
    shipped_file,
    workspace_file,
)

SCHEMAS = {"pipeline": "config.schema.json", "redis": "redis.schema.json"}


def init_files(directory: Path) -> dict[Path, Path]:
    """Where each shipped file goes in a lab's directory: ``{target: source}``."""
    files = {directory / "configs" / name: shipped_file(name) for name in (*STRATEGY_CONFIGS, REDIS_CONFIG)}
    files[directory / WORKSPACE] = workspace_file()
    files[directory / "dagster_home" / DAGSTER_TEMPLATE] = dagster_template()
    return files


def write_init(directory: Path, force: bool = False) -> list[Path]:
    """Copy the configs and templates into ``directory``; refuses to overwrite unless ``force``."""
    files = init_files(directory)
    existing = [t for t in files if t.exists()]
    if existing and not force:
        raise FileExistsError(existing)
    for target, source in files.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
    return list(files)


def schema(which: str) -> dict:
    if which == "redis":
        from lerobot_pipeline.streaming.settings import settings_schema

        return settings_schema()
    from lerobot_pipeline.config import config_schema

    return config_schema()


def schema_text(which: str) -> str:
    return json.dumps(schema(which), indent=2, sort_keys=True) + "\n"


def cmd_init(args) -> int:
    directory = Path(args.directory).resolve()
    try:
        written = write_init(directory, args.force)
    except FileExistsError as e:
        names = ", ".join(str(p.relative_to(directory)) for p in e.args[0])
        print(f"error: {directory} already holds {names}; pass --force to overwrite", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    print(
        "\nUse it (edit the configs first; every key is checked on load):\n"
        f"  export LEROBOT_PIPELINE_CONFIG_DIR={directory / 'configs'}\n"
        f"  export LEROBOT_PIPELINE_REDIS_CONFIG={directory / 'configs' / REDIS_CONFIG}\n"
        f"  export DAGSTER_HOME={directory / 'dagster_home'} LEROBOT_PIPELINE_WORK_DIR={directory / 'work'}\n"
        f"  dagster dev -w {directory / WORKSPACE}\n"
        f"  lerobot-pipeline convert --config {directory / 'configs' / STRATEGY_CONFIGS[1]} --input RAW --output OUT"
    )
    return 0


def cmd_config_schema(args) -> int:
    text = schema_text(args.which)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def register(sub) -> None:
    p = sub.add_parser("init", help="write editable copies of the configs, workspace.yaml and dagster.yaml into DIR",
                       description="Sets up a lab's own directory: DIR/configs/ (dual_arm_*.yaml, redis.yaml), "
                       "DIR/workspace.yaml and DIR/dagster_home/dagster.yaml, copied from the installed package. "
                       "Existing files are never overwritten without --force.")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--force", action="store_true", help="overwrite files that already exist")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("config-schema", help="print the JSON schema of a config file (editors validate YAML with it)",
                       description="JSON schema of configs/dual_arm_*.yaml (pipeline, default) or configs/redis.yaml "
                       "(redis); the published copies are docs/config.schema.json and docs/redis.schema.json.")
    p.add_argument("which", nargs="?", choices=sorted(SCHEMAS), default="pipeline")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=cmd_config_schema)
