"""Command-line interface ``dlnvolume`` (placeholder until the analysis issue lands)."""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    import dlnvolume as dv

    parser = argparse.ArgumentParser(prog="dlnvolume")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment")
    run.add_argument("experiment", nargs="?", default="cmv-2x2")
    run.add_argument("--out", default="dlnvolume-out")
    args = parser.parse_args(argv)
    if args.command == "run":
        X = np.diag([2.0, 1.0])
        for depth in (1, 2, 3, 10, math.inf):
            print(f"depth {depth}: log volume density of diag(2, 1) = {float(dv.log_volume_density(X, depth)):.12f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
