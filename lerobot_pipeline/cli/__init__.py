"""``lerobot-pipeline``: convert airbot_play recordings into LeRobot v2.1 datasets.

Each sub-command lives in a module of this package; this one builds the parser and turns the
project's typed errors into one-line messages and exit codes.
"""

from __future__ import annotations

import argparse
import sys

from lerobot_pipeline.errors import PipelineError

EPILOG = """\
Quick start (from any directory):
  lerobot-pipeline init ./my_lab        # editable configs, workspace.yaml, dagster.yaml
  lerobot-pipeline sample-data /tmp/raw --episodes 3
  lerobot-pipeline convert --config my_lab/configs/dual_arm_nearest.yaml --input /tmp/raw --output /tmp/ds
  lerobot-pipeline validate /tmp/ds

Exit codes:
  0    success
  1    the work ran and found problems: failed episodes or runs, an invalid dataset, a timeout
  2    bad usage or input: unknown option, config error (names the key), unreadable raw data
  130  interrupted (Ctrl-C)

Every command explains itself: lerobot-pipeline COMMAND --help
"""


def build_parser() -> argparse.ArgumentParser:
    from lerobot_pipeline import __version__
    from lerobot_pipeline.cli import convert, orchestrate, queue, scaffold, worker

    parser = argparse.ArgumentParser(
        prog="lerobot-pipeline",
        description="Convert airbot_play dual-arm recordings into LeRobot v2.1 datasets "
        "(nearest, chunking or window alignment), directly or through Dagster.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (convert, orchestrate, queue, scaffold, worker):
        module.register(sub)
    return parser


def start_video_workers_early(argv: list[str]) -> None:
    """``convert`` encodes on forkserver workers whose server imports PyAV, OpenCV and numpy (~0.35 s of CPU).
    Started before this process's own imports (~0.5 s), the two run side by side on separate cores instead of
    one after the other. Not for ``--jobs 1`` or one usable core (videos then encode inline), nor ``--help``;
    if it cannot start here, the pool starts it later and reports any error there."""
    if argv[:1] != ["convert"]:
        return
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    pre.add_argument("--jobs", "-j", type=int)
    pre.add_argument("--help", "-h", action="store_true")
    try:
        known, _ = pre.parse_known_args(argv[1:])
    except argparse.ArgumentError:
        return  # the real parser reports it
    from lerobot_pipeline.core.forkserver import start_forkserver, usable_cpus

    jobs = known.jobs if known.jobs is not None else usable_cpus()  # convert's default
    if known.help or jobs <= 1:
        return
    try:
        start_forkserver()
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    start_video_workers_early(sys.argv[1:] if argv is None else argv)
    from lerobot_pipeline.cli.progress import close_all

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PipelineError as e:
        close_all()  # before the message, so no live bar is drawn over it
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        close_all()
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        close_all()
