"""The command line: parse arguments, call into the package, turn user errors into exit status 2.

Each subcommand's work lives in its own module (`caviar.sweep.command`, `caviar.babysit.command`, ...);
this file only knows their flags. A `ValueError` (or a missing or unwritable file) raised anywhere
below is a problem with the user's input: it is printed as one line on stderr and the exit status
is 2. CAVIAR_DEBUG=1 in the environment shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Sequence

from caviar.config.files import DEFAULT_JOB

EXIT_USER_ERROR = 2

# subcommand -> "module:function"; the function takes the parsed arguments and returns an exit status.
HANDLERS = {
    "parallel": "caviar.sweep.command:command",
    "babysit": "caviar.babysit.command:command",
    "nudge": "caviar.babysit.nudges:command",
    "show": "caviar.views.show:show_command",
    "compare": "caviar.views.show:compare_command",
    "report": "caviar.views.report:command",
}


def _add_common(parser: argparse.ArgumentParser, *, job: bool) -> None:
    if job:
        parser.add_argument("job", nargs="?", metavar="JOB",
                            help=f"job file (.toml) or the name of one in jobs/ (default: {DEFAULT_JOB})")
        parser.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                            help="override a job value, dotted for sections (--set search.trials=8); repeatable")
        parser.add_argument("--seed", type=int, help="seed of the search and of the babysat run")
    parser.add_argument("--out", default="results", metavar="DIR", help="results folder (default: results)")
    parser.add_argument("--name", metavar="NAME",
                        help="run name, the folder under --out (default: the job's name; babysit --from RUN: RUN-babysit)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caviar",
        description="Hyperparameter tuning: many models in parallel (caviar mode) or one babysat model (panda mode).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("parallel", help="caviar mode: sample many configurations and train them in parallel on Ray",
                       description="Sample configurations from the job's [space], train them on Ray with early "
                                   "stopping, and write trials.parquet and epochs.parquet under OUT/NAME.")
    _add_common(p, job=True)
    p.add_argument("--dry-run", action="store_true", help="print the configurations the job would run, without Ray")
    p.add_argument("--resume", action="store_true", help="continue a stopped sweep; finished trials are not rerun")
    p.add_argument("--overwrite", action="store_true", help="replace the results of a run with the same name")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="join an existing Ray cluster (default: $RAY_ADDRESS, else start a local Ray)")
    p.add_argument("--concurrency", type=int, metavar="N", help="trials in flight (default: one per CPU Ray sees)")
    p.add_argument("--quiet", action="store_true", help="no progress display, only the final leaderboard")

    p = sub.add_parser("babysit", help="panda mode: train one model, checkpoint, roll back on trouble",
                       description="Train one model epoch by epoch; keep checkpoints; roll back and lower the "
                                   "learning rate when the score drops or the loss diverges. Nudge it with "
                                   "`caviar nudge NAME key=value`.")
    _add_common(p, job=True)
    p.add_argument("--from", dest="from_run", metavar="RUN", help="start from the best trial of a finished sweep")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace the results of a run with the same name")

    p = sub.add_parser("nudge", help="change a hyperparameter of a running babysit at its next epoch",
                       description="Send a validated change to a running babysit: nothing is executed, only values.")
    p.add_argument("run", metavar="NAME", help="the babysat run's name")
    p.add_argument("changes", nargs="*", metavar="KEY=VALUE", help="hyperparameters to change (learning_rate=0.01)")
    p.add_argument("--rollback", action="store_true", help="roll back to the best checkpoint")
    p.add_argument("--stop", action="store_true", help="stop after the current epoch")
    p.add_argument("--out", default="results", metavar="DIR", help="results folder (default: results)")

    p = sub.add_parser("show", help="status counts and the best trials of a run (or the epochs of a babysat run)")
    p.add_argument("run", metavar="NAME", help="run name under --out, or a path to a run folder")
    p.add_argument("--top", type=int, default=10, metavar="N", help="how many trials (default: 10)")
    p.add_argument("--out", default="results", metavar="DIR", help="results folder (default: results)")

    p = sub.add_parser("compare", help="one row per run: best score, trials, compute, epochs to best")
    p.add_argument("runs", nargs="+", metavar="NAME", help="run names under --out, or paths to run folders")
    p.add_argument("--out", default="results", metavar="DIR", help="results folder (default: results)")

    p = sub.add_parser("report", help="write report.html with figures into a run's folder")
    p.add_argument("run", metavar="NAME", help="run name under --out, or a path to a run folder")
    p.add_argument("--out", default="results", metavar="DIR", help="results folder (default: results)")
    return parser


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    module_name, _, function = HANDLERS[command].partition(":")
    return getattr(importlib.import_module(module_name), function)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(_handler(args.command)(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError,
            IsADirectoryError) as exc:
        if os.environ.get("CAVIAR_DEBUG"):
            raise   # the whole traceback, for finding a bug behind a "user error"
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"caviar {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        from caviar.lifecycle import EXIT_INTERRUPTED   # here: the lifecycle imports the store (pyarrow)

        print(f"caviar {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader stopped early (`caviar show NAME | head`): not an error. Point stdout at
        # nothing so Python's exit-time flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
