"""Command line: ``python -m fastnn [config|bench]``.

With no command it prints the configuration and then a short dense-kernel benchmark
against NumPy.
"""
from __future__ import annotations

import argparse
import sys

import fastnn
from fastnn import _quickbench


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastnn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("config", help="print how fastnn was built and what it runs on")
    bench = sub.add_parser("bench", help="time the dense-layer kernels against NumPy")
    bench.add_argument("--threads", type=int, nargs="+", default=[1, 2], metavar="N",
                       help="thread counts to time (default: 1 2)")
    bench.add_argument("--budget", type=float, default=0.25, help="seconds per measurement (default 0.25)")
    args = parser.parse_args(argv)

    if args.command in (None, "config"):
        fastnn.show_config()
    if args.command is None:
        print()
    if args.command in (None, "bench"):
        thread_counts = getattr(args, "threads", [1, 2])
        for n in thread_counts:
            if n < 1:
                parser.error(f"--threads must be >= 1, got {n}")
        _quickbench.run(thread_counts, budget=getattr(args, "budget", 0.25))
    return 0


if __name__ == "__main__":
    sys.exit(main())
