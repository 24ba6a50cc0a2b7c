"""``python -m fastmlp``: the command line (``info``; more subcommands as they land)."""
from __future__ import annotations

import argparse
import sys


def _cmd_info(args) -> int:
    from . import show_config

    show_config()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fastmlp", description="fastmlp command line")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("info", help="print version, compiler, OpenMP, CPU kernel path, threads, CUDA")
    s.set_defaults(func=_cmd_info)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
