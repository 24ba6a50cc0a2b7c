"""``python -m fastmlp``: the command line.

    info                      version, compiler, OpenMP, CPU kernel path, threads, CUDA
    demo                      the seed network trained on synthetic data, vs PyTorch eager
    train DATA --target COL   train an MLP on a CSV/NPZ file (--out model.npz, --plot loss.png;
                              --task classify for class labels)
    predict MODEL DATA        predictions of a saved model (--out preds.csv; labels and
                              probabilities for a classifier)
    export MODEL OUT.onnx     a saved model as ONNX
    bench [--quick] [--out]   run the benchmarks in bench/ and save JSON + PNG (--grid: the grid)

The subcommands other than ``info`` live in :mod:`fastmlp.cli`.
"""
from __future__ import annotations

import argparse
import sys


def _cmd_info(args) -> int:
    from . import show_config

    show_config()
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .cli import add_subcommands

    p = argparse.ArgumentParser(prog="python -m fastmlp", description="fastmlp command line")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("info", help="print version, compiler, OpenMP, CPU kernel path, threads, CUDA")
    s.set_defaults(func=_cmd_info)
    add_subcommands(sub)
    return p


def main(argv=None) -> int:
    from .cli import run

    args = build_parser().parse_args(argv)
    if args.func is _cmd_info:
        return args.func(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
