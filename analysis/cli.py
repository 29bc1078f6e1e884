"""Command-line interface ``dlnvolume``.

Sub-commands::

    dlnvolume run [EXPERIMENT|config.toml] --out DIR [--seed S] [--workers K] [--dask ADDRESS|local]
                  [--quick] [--force | --resume] [--no-progress] [-q | -v]
    dlnvolume --version
    dlnvolume volume MATRIX.npy --depth N [--rank r] [--unnormalized]
    dlnvolume check [EXPERIMENT|config.toml] [--quick] [--workers K] [--seed S]
    dlnvolume experiments
    dlnvolume config --defaults
    dlnvolume report OUT
    dlnvolume bench

Bad input (malformed TOML, unknown keys, wrong types, existing output folder, ``--resume`` with another
configuration) prints one line ``dlnvolume: error: ...`` on stderr and exits with code 2, without a
traceback; the whole configuration is checked against its task (references, ranks, depths, windows)
before any flow runs. Ctrl-C prints one line with the ``--resume`` hint and exits with 130. A file
that cannot be written (disk full, permission denied, read-only file system) prints
one line ``dlnvolume: error: cannot write PATH: REASON; ...`` saying what happened to the previous
results, and exits with code 1.

Resuming: ``run`` checkpoints every finished batch of flows and of MCMC chains under ``OUT/checkpoints``
(the configuration of the run in progress in ``OUT/checkpoints/config.toml``). After an interruption
(even SIGKILL), ``run ... --out OUT --resume`` with the same configuration skips the finished batches
and gives bit-identical results; it prints one line per stage, e.g.
``flows N5: resumed 3/8 batches from checkpoints``. The final outputs are written to a staging folder
and moved into place only when all are written.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

__all__ = ["main"]


class _UsageError(Exception):
    """An error reported as one line with exit code 2."""


class _Version(argparse.Action):
    """``--version``: imports :mod:`dlnvolume` only when asked (the parser itself stays light)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        import dlnvolume

        print(f"dlnvolume {dlnvolume.__version__}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dlnvolume", description="Volume measures of the deep linear network.")
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment (built-in name or TOML file)")
    run.add_argument("experiment", nargs="?", default="cmv-2x2", help="built-in name or path to a TOML file")
    run.add_argument("--out", required=True,
                     help="output folder (refused if non-empty unless --resume or --force)")
    run.add_argument("--seed", type=int, default=None, help="override the experiment seed")
    run.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    run.add_argument("--dask", default=None, metavar="ADDRESS",
                     help="'local' for a dask LocalCluster, or a scheduler address")
    run.add_argument("--quick", action="store_true", help="reduced sizes (the [quick] table of the configuration; dlnvolume check --quick estimates the time)")
    again = run.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue an interrupted run in --out: finished batches in OUT/checkpoints are reused; "
                            "refused unless the configuration equals the one recorded there")
    again.add_argument("--force", action="store_true",
                       help="write into a non-empty output folder, whatever its configuration (checkpoints of "
                            "stages with the same settings are reused; other outputs are replaced)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    talk = run.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true",
                      help="print only errors and the final line (no progress bars, no verdict lines)")
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="also print one line per stage (checkpoint reuse, seconds)")
    vol = sub.add_parser("volume", help="log volume density of a matrix stored as .npy")
    vol.add_argument("matrix")
    vol.add_argument("--depth", required=True, help="integer >= 1 or inf")
    vol.add_argument("--rank", type=int, default=None)
    vol.add_argument("--unnormalized", action="store_true")
    chk = sub.add_parser("check", help="validate a configuration and print the run's plan: stages, sizes, and "
                                       "estimates of time and memory from a short calibration on this machine")
    chk.add_argument("experiment", nargs="?", default="cmv-2x2", help="built-in name or path to a TOML file")
    chk.add_argument("--seed", type=int, default=None, help="as for run")
    chk.add_argument("--workers", type=int, default=None, help="as for run (default: all cores)")
    chk.add_argument("--quick", action="store_true", help="plan the --quick variant")
    sub.add_parser("experiments", help="list built-in experiments")
    conf = sub.add_parser("config", help="configuration keys: --defaults prints every key with its default and meaning")
    conf.add_argument("--defaults", action="store_true", required=True,
                      help="print every key of a configuration file with its default and meaning (a TOML template)")
    rep = sub.add_parser("report", help="re-render report.md/html, tests.json, results.nc and the figures of a "
                                        "results folder from its checkpoints (no flow or sampler runs again)")
    rep.add_argument("out", metavar="OUT", help="a results folder written by dlnvolume run")
    bench = sub.add_parser("bench", help="benchmarks: ours against the alternatives, ratios from one run")
    bench.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats (< 60 s)")
    bench.add_argument("--out", default="bench-out", help="folder for bench.json and bench.png")
    bench.add_argument("--sections", default=None,
                       help="comma-separated subset of the sections of analysis.bench.SECTIONS "
                            "(default: every section)")
    bench.add_argument("--threads", type=int, default=1,
                       help="BLAS/PyTorch threads of the benchmarking process (default 1: reproducible ratios "
                            "on a shared machine; 0 = library defaults)")
    return p


def _cmd_experiments() -> int:
    from .experiment import builtin_experiments

    for name, text in builtin_experiments().items():
        desc = tomllib.loads(text).get("description", "")
        print(f"{name:18s} {desc}")
    return 0


def _cmd_volume(args: argparse.Namespace) -> int:
    import numpy as np

    import dlnvolume as dv
    from dlnvolume import strata

    depth: Any = args.depth
    depth = math.inf if str(depth).lower() in ("inf", "infinity") else depth
    if depth is not math.inf:
        try:
            depth = int(depth)
        except ValueError:
            raise _UsageError(f"--depth={args.depth!r}: expected an integer >= 1 or inf") from None
    try:
        X = np.load(args.matrix, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise _UsageError(f"MATRIX {args.matrix!r}: cannot read a .npy array ({exc})") from None
    if X.dtype.kind == "c":
        raise _UsageError(f"MATRIX {args.matrix!r}: complex dtype {X.dtype}; expected a real matrix")
    if X.dtype.kind not in "biuf":
        raise _UsageError(f"MATRIX {args.matrix!r}: non-numeric dtype {X.dtype}; expected a real matrix")
    if X.ndim != 2:
        raise _UsageError(f"MATRIX {args.matrix!r}: shape {X.shape}; expected one m x n matrix (2-D)")
    X = X.astype(np.float64)
    m, n = X.shape
    want = min(m, n) if args.rank is None else args.rank
    if np.all(np.isfinite(X)) and 0 <= want <= min(m, n):
        have = int(strata.numerical_rank(X, None))
        if have != want:
            s = np.linalg.svd(X, compute_uv=False)
            print(f"dlnvolume: warning: the matrix has numerical rank {have} (σ = "
                  f"{', '.join(f'{v:.3g}' for v in s)}; rtol {strata.default_rtol(m, n):.2g}), not the requested "
                  f"stratum M_{want}; the value is the density at its best rank-{want} approximation"
                  + (f" (pass --rank {have} for its own stratum)" if have >= 1 else ""), file=sys.stderr)
    val = np.asarray(dv.log_volume_density(X, depth, rank=args.rank, normalized=not args.unnormalized))
    for v in val.reshape(-1):
        print(f"{float(v):.15g}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from .experiment import defaults_text

    print(defaults_text())
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    """Re-render report.md/html, tests.json, results.nc and the figures of a results folder from its
    checkpoints: no flow and no sampler runs again (a missing checkpoint is an error naming it)."""
    import json

    from .experiment import load_config
    from .report import write_outputs
    from .runner import run_experiment
    from .verdict import verdicts

    out = Path(args.out)
    cfg_path = out / "config.toml"
    if not out.is_dir() or not cfg_path.is_file():
        raise _UsageError(f"OUT {str(out)!r}: no config.toml there (not a finished dlnvolume results folder; an "
                          "interrupted run is completed by dlnvolume run ... --resume)")
    if not (out / "checkpoints").is_dir():
        raise _UsageError(f"OUT {str(out)!r}: no checkpoints/ folder (the report is rebuilt from it)")
    t_start = time.perf_counter()
    cfg, _ = load_config(str(cfg_path))
    try:
        info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    res = run_experiment(cfg, out, progress=False, reuse_only=True)
    info.update({"rendered_by": "dlnvolume report", "versions": _versions(), "timings": dict(res.timings),
                 "time_spent": dict(res.time_spent)})
    rows = verdicts(res)
    try:
        write_outputs(res, out, info, texts={"config.toml": cfg_path.read_text(encoding="utf-8")}, t_start=t_start,
                      verdicts=rows)
    except OSError as exc:
        print(f"dlnvolume: error: {_write_failure(exc, out, True)}", file=sys.stderr)
        return 1
    print(f"dlnvolume: re-rendered {out / 'report.md'} from {out / 'checkpoints'} "
          f"({time.perf_counter() - t_start:.1f} s)")
    return 0


def _executor(args: argparse.Namespace) -> tuple[Any, Any]:
    """(executor, closer) for --dask; (None, None) otherwise."""
    if args.dask is None:
        return None, None
    try:
        from dask.distributed import Client, LocalCluster  # lazy: optional dependency
    except ImportError:
        raise _UsageError("--dask needs dask.distributed; install it with  pip install 'dlnvolume[dask]'") from None
    if args.dask == "local":
        cluster = LocalCluster(n_workers=args.workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = Client(cluster)

        def close() -> None:
            client.close()
            cluster.close()
    else:
        try:
            client = Client(args.dask, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise _UsageError(f"--dask {args.dask!r}: cannot connect to the scheduler ({exc})") from None

        def close() -> None:
            client.close()
    return client.get_executor(), close


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("dlnvolume", "numpy", "scipy", "arviz", "matplotlib", "emcee", "xarray"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _load_checked(args: argparse.Namespace) -> tuple[Any, Any]:
    """The configuration of ``run``/``check`` (seed, quick, workers applied), validated against its task and
    the machine's memory before any compute."""
    from .experiment import load_config

    cfg, _ = load_config(args.experiment)
    if args.seed is not None:
        if args.seed < 0:
            raise _UsageError(f"--seed={args.seed}: expected an integer >= 0")
        cfg = replace(cfg, seed=args.seed)
    if args.quick:
        cfg = cfg.quick_version()
    if args.workers is not None and args.workers < 1:
        raise _UsageError(f"--workers={args.workers}: expected an integer >= 1")
    from .plan import check_memory
    from .runner import prepare

    cfg, task = prepare(cfg)  # the whole configuration against its task, before any flow (seconds)
    check_memory(cfg, task, args.workers)  # a run that cannot fit is refused now, naming the key to reduce
    return cfg, task


def _flows_cache_cold() -> bool:
    """Whether numba's cache holds no compiled integrator yet (next to the sources, or in NUMBA_CACHE_DIR)."""
    from dlnvolume.flows import compiled

    folders = [Path(compiled.__file__).parent / "__pycache__"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        folders.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    return not any(any(f.rglob("compiled.integrate-*.nbi")) for f in folders if f.is_dir())


def _cmd_check(args: argparse.Namespace) -> int:
    from .plan import format_plan, make_plan

    cfg, task = _load_checked(args)
    print(f"{cfg.name}: configuration valid ({task.shape[0]}x{task.shape[1]} task, {task.n_observed} observed "
          f"entries); calibrating ...", flush=True)
    print(format_plan(make_plan(cfg, task, args.workers)))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .experiment import to_toml

    t_start = time.perf_counter()
    cfg, task = _load_checked(args)
    args.task = task
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise _UsageError(f"--out {str(out)!r} exists and is not a folder")
    config_text = to_toml(cfg.to_dict())
    non_empty = out.is_dir() and any(out.iterdir())
    if non_empty and args.resume:
        _check_resume(out, config_text)
    elif non_empty and not args.force:
        raise _UsageError(f"--out {str(out)!r} is not empty; use --force to write into it (checkpoints there are "
                          "reused) or --resume to continue an interrupted run with the same configuration")
    had_results = any((out / f).exists() for f in ("report.md", "endpoints.npz", "results.nc"))
    args.fresh = not non_empty and not args.resume  # nothing to resume: no "resumed 0/n" lines
    try:
        return _run_into(cfg, args, out, config_text, t_start)
    except OSError as exc:
        print(f"dlnvolume: error: {_write_failure(exc, out, had_results)}", file=sys.stderr)
        return 1


def _toml_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two parsed TOML documents."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys: list[str] = []
        for k in sorted(set(old) | set(new)):
            keys += _toml_diff(old.get(k), new.get(k), f"{prefix}{k}.")
        return keys
    return [] if old == new else [prefix.rstrip(".") or "(document)"]


def _check_resume(out: Path, config_text: str) -> None:
    """``--resume`` into a non-empty ``out``: its recorded configuration must equal the new one."""
    recorded = next((p for p in (out / "checkpoints" / "config.toml", out / "config.toml") if p.is_file()), None)
    if recorded is None:
        raise _UsageError(f"--resume: --out {str(out)!r} has no config.toml (not a dlnvolume results folder); "
                          "nothing to resume")
    try:
        old = tomllib.loads(recorded.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _UsageError(f"--resume: cannot read {str(recorded)!r} ({exc}); use --force to start over") from None
    diff = _toml_diff(old, tomllib.loads(config_text))
    if diff:
        shown = ", ".join(diff[:5]) + (f" and {len(diff) - 5} more" if len(diff) > 5 else "")
        raise _UsageError(f"--resume: the configuration differs from the one recorded in {str(recorded)!r} "
                          f"(keys {shown}); rerun with the same experiment, --seed and --quick, or use --force")


def _write_failure(exc: OSError, out: Path, had_results: bool) -> str:
    """One line saying what could not be written and what happened to the results in ``out``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    what = f"cannot write {exc.filename}: {reason}" if exc.filename else f"cannot write into {out}: {reason}"
    replaced = tuple(getattr(exc, "replaced", ()) or ())
    if replaced:
        names = ", ".join(os.path.relpath(p, out) for p in replaced)
        return (f"{what}; {len(replaced)} new output file(s) were already moved into {out} ({names}); the other "
                f"outputs there are from the previous run (rerun with --resume to complete the set)")
    if had_results:
        return f"{what}; previous results in {out} are intact (finished checkpoints are kept; rerun with --resume)"
    return f"{what}; no results were written to {out} (finished checkpoints are kept; rerun with --resume)"


def _run_into(cfg: Any, args: argparse.Namespace, out: Path, config_text: str, t_start: float) -> int:
    from dlnvolume.parallel import atomic_write_text

    from .report import write_outputs
    from .runner import run_experiment

    out.mkdir(parents=True, exist_ok=True)
    running = out / "checkpoints" / "config.toml"  # the configuration of the run in progress (for --resume)
    if not (running.is_file() and running.read_text(encoding="utf-8") == config_text):
        atomic_write_text(running, config_text)

    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    if not quiet:  # the plan first (flows calibrated briefly; dlnvolume check also calibrates the references)
        from .plan import BUDGET_S, format_plan, make_plan

        if cfg.flow_method == "end_to_end" and _flows_cache_cold():
            print("compiling the flow integrator (numba; once after an install, about 1.5 min on 2 cores; later "
                  "runs load it in about a second) ...", flush=True)

        print(format_plan(make_plan(cfg, args.task, args.workers, budget=BUDGET_S / 16, references=False)),
              flush=True)

    def log(line: str) -> None:
        print(line, flush=True)

    log.resuming = not getattr(args, "fresh", False)  # type: ignore[attr-defined]  # no "resumed 0/n" on a fresh run

    executor, close = _executor(args)
    try:
        with _warnings_one_line(quiet):
            res = run_experiment(cfg, out, task=getattr(args, "task", None), executor=executor, workers=args.workers,
                                 progress=not (args.no_progress or quiet),
                                 log=None if quiet or (getattr(args, "fresh", False) and not verbose) else log)
    finally:
        if close is not None:
            close()
    info = {"experiment": cfg.name, "argv": sys.argv[1:], "seed": cfg.seed, "quick": bool(args.quick),
            "workers": args.workers, "dask": args.dask, "cpu_count": os.cpu_count(), "versions": _versions(),
            "timings": dict(res.timings), "time_spent": dict(res.time_spent)}
    from .verdict import format_lines, verdicts

    rows = verdicts(res)
    write_outputs(res, out, info, texts={"config.toml": config_text}, t_start=t_start, verdicts=rows)
    if verbose:
        for k, v in info["timings"].items():
            print(f"stage {k}: {v:.1f} s")
    if not quiet:
        print("\n".join(format_lines(rows, cfg, quick=bool(args.quick), res=res)))
    print(f"dlnvolume: wrote {out / 'report.md'} ({info['timings']['total']:.1f} s)")
    return 0


@contextlib.contextmanager
def _warnings_one_line(quiet: bool) -> Iterator[None]:
    """Warnings raised during a run (a reference that did not converge, ...) as one line ``warning: ...`` on
    stderr, without the source line Python prints; none with ``-q`` (the report keeps them)."""
    import warnings

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if not quiet:
            print(f"warning: {message}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _leave(code: int) -> None:
    """End the process now with ``code`` after flushing its output: nothing that Python runs at exit (the
    joins of a stopped process pool's helper threads) can keep an interrupted run from exiting."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:  # the one thing multiprocessing's exit handler would still do: remove its temporary folder
        import multiprocessing.process
        import shutil

        tmp = multiprocessing.process.current_process()._config.get("tempdir")
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception:  # pragma: no cover - private API of another Python
        pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dlnvolume`` console script; returns the exit code.

    ``argv=None`` (the program itself): an interrupted ``run`` ends the process at once with code 130
    once its finished batches are saved. With an explicit ``argv`` (in-process use) it returns 130.
    """
    args = _parser().parse_args(argv)
    if args.command == "run":
        import signal

        main_pid = os.getpid()

        def on_sigint(signum: int, frame: Any) -> None:
            if os.getpid() != main_pid:  # a forked worker process: leave quietly, the parent reports
                os._exit(130)
            raise KeyboardInterrupt

        # installed before numpy and the package are imported: Ctrl-C at any moment gives the one line below
        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            code = _main(args)
        except KeyboardInterrupt:
            print(f"dlnvolume: interrupted; finished batches are kept in {os.path.join(args.out, 'checkpoints')}: "
                  f"rerun the same command with --resume to continue", file=sys.stderr)
            if argv is None:
                _leave(130)
            return 130
        finally:
            signal.signal(signal.SIGINT, previous)
        return code
    return _main(args)


def _main(args: argparse.Namespace) -> int:
    from dlnvolume.errors import DLNVolumeError, WorkerLostError

    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "volume":
            return _cmd_volume(args)
        if args.command == "experiments":
            return _cmd_experiments()
        if args.command == "check":
            return _cmd_check(args)
        if args.command == "config":
            return _cmd_config(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "bench":
            from .bench import SECTIONS, run_bench

            # no --sections: every registered section (SECTIONS is the only list of them)
            sections = (list(SECTIONS) if args.sections is None
                        else [x.strip() for x in args.sections.split(",") if x.strip()])
            unknown = [x for x in sections if x not in SECTIONS]
            if unknown:
                raise _UsageError(f"--sections={args.sections!r}: unknown {unknown}; expected names from {list(SECTIONS)}")
            if args.threads < 0:
                raise _UsageError(f"--threads={args.threads}: expected 0 (library defaults) or an integer >= 1")
            result = run_bench(args.out, quick=args.quick, sections=sections, threads=args.threads or None)
            return 1 if result["errors"] else 0
    except (_UsageError, DLNVolumeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"dlnvolume: error: {msg}", file=sys.stderr)
        return 2
    except WorkerLostError as exc:  # a worker killed by the system: one line, what was kept, what to reduce
        print(f"dlnvolume: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command == "run":  # main() says what was kept
            raise
        print("dlnvolume: interrupted", file=sys.stderr)
        return 130
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
