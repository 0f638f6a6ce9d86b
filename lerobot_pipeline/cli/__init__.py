"""``lerobot-pipeline``: convert airbot_play recordings into LeRobot v2.1 datasets.

Each sub-command lives in a module of this package; this one builds the parser and turns the
project's typed errors into one-line messages and exit codes.
"""

from __future__ import annotations

import argparse
import sys

from lerobot_pipeline.errors import PipelineError

EPILOG = """\
Quick start:
  lerobot-pipeline sample-data /tmp/raw --episodes 3
  lerobot-pipeline convert --config configs/dual_arm_nearest.yaml --input /tmp/raw --output /tmp/ds
  lerobot-pipeline validate /tmp/ds

Every command explains itself: lerobot-pipeline COMMAND --help
"""


def build_parser() -> argparse.ArgumentParser:
    from lerobot_pipeline.cli import convert, orchestrate, queue

    parser = argparse.ArgumentParser(
        prog="lerobot-pipeline",
        description="Convert airbot_play dual-arm recordings into LeRobot v2.1 datasets "
        "(nearest, chunking or window alignment), directly or through Dagster.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (convert, orchestrate, queue):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
