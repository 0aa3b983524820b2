"""Command line: ``paretopo demo | showcase``.

``demo`` is the README's main command. Until the training pipeline lands it runs the core
showcase and says so; ``showcase`` always prints the tour of the multi-objective core.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console


def _showcase(_: argparse.Namespace) -> int:
    from paretopo import showcase

    showcase.run()
    return 0


def _demo(args: argparse.Namespace) -> int:
    console = Console()
    console.print(
        "[yellow]The training demo (tiny policy, stage 1 then stage 2 next to a baseline) is not built yet; "
        "running the core showcase instead.[/yellow]"
    )
    return _showcase(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paretopo", description="ParetoPO: accurate and tool-frugal LLM agents.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="the CPU demo on the embedded default").set_defaults(handler=_demo)
    commands.add_parser("showcase", help="a tour of Pareto ranks, advantages and the stage-1 meta reward").set_defaults(
        handler=_showcase
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
