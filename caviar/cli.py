"""The command line: parse arguments, call into the package, turn errors into one line and an exit status.

Each subcommand's work lives in its own module (`caviar.sweep.command`, `caviar.babysit.command`, ...);
this file only knows their flags. Every error ends the command with one line on stderr,
`caviar CMD: error: ...`, and no traceback (CAVIAR_DEBUG=1 in the environment shows it instead):

- a usage error (an unknown flag, a flag's bad value), a `ValueError` raised anywhere below, or a
  path that cannot be used as given (missing, a file where a folder belongs, no permission, a
  read-only file system) is a problem with the user's input: exit status 2;
- any other `OSError` is the machine's (a full disk, a quota, an I/O error): exit status 1. What
  was written before it stays intact, since every write is atomic (`caviar.store.atomic`).

An `OSError` is told as "PATH: problem", and as "--out: PATH: problem" when PATH is the results
folder, inside it or on the way to it; a full disk without a path names the results folder.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

from caviar.config.files import DEFAULT_JOB

EXIT_USER_ERROR = 2
EXIT_ENVIRONMENT = 1   # the machine failed (disk full, quota, I/O error), not the user's input
# errnos of a path that cannot be used as given: bad input, like a bad job value.
_BAD_PATH = frozenset({errno.ENOENT, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM,
                       errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP})
# errnos of a failed write that may come without a path (pyarrow, zipfile, a file's close): the
# only writes a command makes are into the results folder.
_STORAGE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})

# subcommand -> "module:function"; the function takes the parsed arguments and returns an exit status.
HANDLERS = {
    "parallel": "caviar.sweep.command:command",
    "babysit": "caviar.babysit.command:command",
    "nudge": "caviar.babysit.nudges:command",
    "show": "caviar.views.show:show_command",
    "compare": "caviar.views.show:compare_command",
    "report": "caviar.views.report:command",
    "serve": "caviar.serve.command:command",
}


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, `caviar parallel: error: ...` (exit status 2),
    rather than the usage block and the error; --help is unchanged."""

    commands: dict[str, argparse.ArgumentParser]   # the root's subcommand parsers, by name (set by build_parser)

    def error(self, message: str) -> None:   # type: ignore[override]
        text = " ".join(message.split())   # one line, whatever argparse wrapped
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


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


def _version() -> str:
    from caviar import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="caviar",
        description="Hyperparameter tuning: many models in parallel (caviar mode) or one babysat model (panda mode).",
    )
    parser.add_argument("--version", action="version", version=f"caviar {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.commands = sub.choices

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
    p.add_argument("--json", action="store_true", help="one JSON object instead of tables, for scripts")
    p.add_argument("--out", default="results", metavar="DIR", help="results folder (default: results)")

    p = sub.add_parser("compare", help="one row per run: best score, trials, compute, epochs to best")
    p.add_argument("runs", nargs="+", metavar="NAME", help="run names under --out, or paths to run folders")
    p.add_argument("--out", default="results", metavar="DIR", help="results folder (default: results)")

    p = sub.add_parser("report", help="write report.html with figures into a run's folder")
    p.add_argument("run", metavar="NAME", help="run name under --out, or a path to a run folder")
    p.add_argument("--out", default="results", metavar="DIR", help="results folder (default: results)")

    p = sub.add_parser("serve", help="a live web app over the results: runs, charts, nudges",
                       description="Serve the runs under --out as web pages that follow running runs live, "
                                   "with a JSON API under /api/. Prints the address and a token for actions.")
    p.add_argument("--out", default="results", metavar="DIR", help="results folder (default: results)")
    p.add_argument("--port", type=int, default=8765, metavar="N", help="port (default: 8765; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1", metavar="HOST",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    return parser


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    module_name, _, function = HANDLERS[command].partition(":")
    return getattr(importlib.import_module(module_name), function)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """The command line, flags accepted anywhere on it (`caviar --out DIR show NAME`, `caviar compare A
    --out DIR B`, `caviar nudge NAME --out DIR learning_rate=0.01`): the command is the first word that
    is neither a flag nor a flag's value, and its own parser reads every other word intermixed, so
    positionals may sit on either side of a flag. `--help` or `--version` before the command is the
    root's; no command (or an unknown one) is the root's one-line usage error."""
    words = list(argv)
    commands = parser.commands   # type: ignore[attr-defined]
    at = command_index(words, _flags_with_values(commands.values()))
    asked = [w for w in words[:at] if w == "-h" or _unique_prefix(w, frozenset(("--help", "--version")))]
    if asked or at is None or words[at] not in commands:
        # --help, --version, or the root's one-line usage error (no command, or an unknown one): exits
        parser.parse_args(asked[:1] if asked or at is None else [words[at]])
        raise AssertionError("the root parser exits without a known command")
    ns = commands[words[at]].parse_intermixed_args(words[:at] + words[at + 1:])   # errors: one line
    ns.command = words[at]
    return ns


def command_index(words: Sequence[str], with_values: frozenset[str]) -> int | None:
    """Where the command's name is in `words` (pure): the first word that is neither a flag nor the
    value of a flag in `with_values` (given as `--out DIR`, not `--out=DIR`); None if every word is.
    A unique prefix of a flag counts as the flag, as argparse reads it."""
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("-"):
            return i
        if "=" not in word and _unique_prefix(word, with_values):
            i += 1   # its value: a word that may name a command (`--out show`)
        i += 1
    return None


def _unique_prefix(word: str, flags: frozenset[str]) -> bool:
    return word in flags or len([f for f in flags if f.startswith(word) and word.startswith("--")]) == 1


def _flags_with_values(parsers: Iterable[argparse.ArgumentParser]) -> frozenset[str]:
    """Every option string of the commands' parsers that takes a value (`--out`, `--set`, `--port`)."""
    return frozenset(flag for p in parsers for action in p._actions if action.option_strings and action.nargs != 0
                     for flag in action.option_strings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, sys.argv[1:] if argv is None else argv)
    try:
        return int(_handler(args.command)(args) or 0)
    except KeyboardInterrupt:
        from caviar.lifecycle import EXIT_INTERRUPTED   # here: the lifecycle imports the store (pyarrow)

        print(f"caviar {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader stopped early (`caviar show NAME | head`): not an error. Point stdout at
        # nothing so Python's exit-time flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as exc:
        if os.environ.get("CAVIAR_DEBUG"):
            raise   # the whole traceback, for finding a bug behind an error line
        message, status = error_line(exc, getattr(args, "out", None))
        print(f"caviar {args.command}: error: {message}", file=sys.stderr)
        return status


def error_line(exc: BaseException, out: str | None = None) -> tuple[str, int]:
    """The one-line message and the exit status of an error (see the module's docstring).

    out: the command's --out, so that a path in it is told as "--out: PATH: problem".
    """
    if not isinstance(exc, OSError):
        return (str(exc).splitlines() or [type(exc).__name__])[0], EXIT_USER_ERROR
    bad_path = exc.errno in _BAD_PATH or isinstance(
        exc, (FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError, IsADirectoryError))
    status = EXIT_USER_ERROR if bad_path else EXIT_ENVIRONMENT
    path = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes, os.PathLike)) else None
    if path is None and out is not None and exc.errno in _STORAGE:
        path = out
    if not exc.strerror:   # a message of its own ("--out: x exists and is not a run folder")
        return " ".join(str(exc).split()) or type(exc).__name__, status
    if path is None:
        return exc.strerror, status
    problem = exc.strerror
    if exc.errno == errno.EEXIST and not os.path.isdir(path):
        problem = "exists and is not a folder"
    prefix = "--out: " if out is not None and _on_the_way(path, out) else ""
    return f"{prefix}{path}: {problem}", status


def _on_the_way(path: str, out: str) -> bool:
    """`path` is the folder `out`, inside it, or one of the folders above it."""
    p, o = Path(os.path.abspath(path)), Path(os.path.abspath(out))
    return p == o or o in p.parents or p in o.parents
