"""``python -m fastmlp``: the command line.

    info                      version, compiler, OpenMP, CPU kernel path, threads, CUDA, and
                              whether a path cost model is cached (and where from)
    calibrate                 measure the small-path / gemm-path cost model now, cache and show
                              it (--trainer train|fit|both)
    demo                      the seed network trained on synthetic data, vs PyTorch eager
    train DATA --target COL   train an MLP on a CSV/NPZ file (--out model.npz, --plot loss.png;
                              --task classify for class labels)
    predict MODEL DATA        predictions of a saved model (--out preds.csv; labels and
                              probabilities for a classifier)
    export MODEL OUT.onnx     a saved model as ONNX
    bench [--quick] [--out]   run the benchmarks in bench/ and save JSON + PNG (--grid: the grid)

The subcommands other than ``info`` and ``calibrate`` live in :mod:`fastmlp.cli`.
"""
from __future__ import annotations

import argparse
import sys


def _cmd_info(args) -> int:
    from . import show_config

    show_config()
    from . import costmodel

    print("\n".join(costmodel.status_lines()))
    return 0


def _cmd_calibrate(args) -> int:
    from . import costmodel

    trainers = costmodel.TRAINERS if args.trainer in ("all", "both") else (args.trainer,)
    if costmodel.mode() == "rule":
        print(f"note: {costmodel.ENV_MODE}=rule is set: fits use the compiled rule, not this model")
    print(f"calibrating the path cost model ({', '.join(trainers)}) on CPU path "
          f"{costmodel.ops.cpu.current_isa()}, {costmodel.ops.cpu.get_num_threads()} thread(s) ...")
    for t, e in costmodel.calibrate(trainers).items():
        print("\n".join(costmodel.table_lines(e)))
        print(f"    {e['source']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .cli import add_subcommands

    p = argparse.ArgumentParser(prog="python -m fastmlp", description="fastmlp command line")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("info", help="print version, compiler, OpenMP, CPU kernel path, threads, CUDA")
    s.set_defaults(func=_cmd_info)
    s = sub.add_parser("calibrate", help="measure the small-path / gemm-path cost model of the "
                       "fused trainers and of inference on this machine, cache it and print it")
    s.add_argument("--trainer", choices=("train", "fit", "infer", "all", "both"), default="all",
                   help="mlp_train (ReLU/MSE/SGD), mlp_fit (general), infer (the inference "
                   "plan) or all (default; 'both' is the same)")
    s.set_defaults(func=_cmd_calibrate)
    add_subcommands(sub)
    return p


def main(argv=None) -> int:
    from .cli import run

    args = build_parser().parse_args(argv)
    if args.func in (_cmd_info, _cmd_calibrate):
        return args.func(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
