"""The control channel of a running babysit: a person's nudges.

`python -m caviar nudge NAME learning_rate=5e-4 [--rollback] [--stop]` checks that a babysit of NAME
is alive, validates the changes (the same way the job file's [model] is validated), and drops one
JSON file into OUT/NAME/nudges/. The loop picks the files up at its next epoch boundary in name
order, applies them, and moves them to nudges/applied/ (or nudges/refused/). The channel carries
data only — keys and TOML values — and nothing in it is ever executed. A babysit that has not
opened its folder yet (training its first epoch: `--overwrite` will replace the folder) is not
nudged: the run lock says when it has (`caviar.store.lock.mark_open`).

Files: OUT/NAME/nudges/<time_ns>-<pid>-<random>.json: {"set": {key: value}, "rollback": bool,
"stop": bool, "sent": unix seconds}, written whole (temp file, then a rename). Whether a babysit is
alive is the run lock's answer (`caviar.store.lock.holder`).

Nothing crosses a symbolic link: while nudges/, nudges/applied or nudges/refused is a link (or not
a folder: `blocked`), nothing is sent, read or moved; a nudge file that is a link is refused unread,
and moved (the link itself) to nudges/refused/.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from caviar.config.overrides import parse_value
from caviar.store.atomic import atomic_write_bytes

NUDGES_DIR = "nudges"
APPLIED_DIR = "applied"
REFUSED_DIR = "refused"


# --- nudges ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nudge:
    """A person's request. changes: hyperparameter -> new value; rollback: back to the best
    checkpoint; stop: stop at the next epoch boundary. name: the file it came in (for the record)."""

    changes: Mapping[str, Any] = field(default_factory=dict)
    rollback: bool = False
    stop: bool = False
    name: str = ""

    def describe(self) -> str:
        """One line: "learning_rate=0.0005 rollback"."""
        parts = [f"{k}={json.dumps(v)}" for k, v in self.changes.items()]
        parts += [flag for flag, on in (("rollback", self.rollback), ("stop", self.stop)) if on]
        return " ".join(parts)


def _check_value(key: str, value: Any) -> None:
    """Only plain data crosses the channel: numbers, booleans, strings and lists of them."""
    if isinstance(value, list):
        for item in value:
            _check_value(key, item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{key}: expected a finite number, got {value!r}")
    elif not isinstance(value, (bool, int, float, str)):
        raise ValueError(f"{key}: expected a number, boolean, string or list, got {value!r}")


def parse_changes(texts: Sequence[str]) -> dict[str, Any]:
    """`["learning_rate=5e-4", "l2=0"]` -> {"learning_rate": 0.0005, "l2": 0}: values read as TOML
    values (text that is not one stays text). Raises ValueError on a malformed item."""
    changes: dict[str, Any] = {}
    for text in texts:
        key, sep, value_text = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"nudge: expected KEY=VALUE (e.g. learning_rate=0.0005), got {text!r}")
        value = parse_value(value_text.strip())
        _check_value(key, value)
        changes[key] = value
    return changes


def validate_changes(changes: Mapping[str, Any], model: Mapping[str, Any]) -> None:
    """Raise ValueError unless the running model would accept `changes`.

    For a built-in trainer (whose code ships with caviar, so checking imports nothing from the run's
    folder): each key must be one of its `mutable` hyperparameters, and the job's [model] with the
    changes must pass its `check_config` (so a bad value is named the way the job file names it). A
    user's trainer checks its own in `set_hyperparameters` when the loop applies the nudge (a refusal
    there is recorded and changes nothing).
    """
    from caviar.config.job import DEFAULT_TRAINER
    from caviar.trainers.registry import is_builtin, resolve_trainer

    name = model.get("trainer", DEFAULT_TRAINER)
    if not isinstance(name, str) or not is_builtin(name):
        return
    trainer = resolve_trainer(name)
    mutable = tuple(getattr(trainer, "mutable", ()))
    for key in changes:
        if key not in mutable:
            raise ValueError(f"{key}: cannot be changed while the model trains; nudge one of {', '.join(mutable)}")
    if callable(getattr(trainer, "check_config", None)):
        trainer.check_config({**{k: v for k, v in model.items() if k != "trainer"}, **changes})


def blocked(run_dir: str | Path) -> Path | None:
    """The first of nudges/, nudges/applied/, nudges/refused/ that is a symbolic link or not a folder
    (None: the channel is safe to use). While one is, no nudge is sent, read or moved."""
    folder = Path(run_dir) / NUDGES_DIR
    for path in (folder, folder / APPLIED_DIR, folder / REFUSED_DIR):
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            return path
    return None


def send(run_dir: str | Path, nudge: Nudge) -> Path:
    """Write `nudge` into the run's nudges/ folder, whole (temp file + os.replace); returns its path.
    Raises ValueError, naming it, when a nudges folder is a symbolic link (or not a folder)."""
    folder = Path(run_dir) / NUDGES_DIR
    bad = blocked(run_dir)
    if bad is not None:
        raise ValueError(f"nudge: {bad} is {_what(bad)}; nudges never go through one (remove it)")
    folder.mkdir(parents=True, exist_ok=True)
    # Names sort in sending order: nanosecond clock first, then pid and randomness to stay unique.
    name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}.json"
    body = {"set": dict(nudge.changes), "rollback": nudge.rollback, "stop": nudge.stop, "sent": time.time()}
    return atomic_write_bytes(folder / name, json.dumps(body, allow_nan=False).encode())


def _what(path: Path) -> str:
    return "a symbolic link" if path.is_symlink() else "not a folder"


def pending(run_dir: str | Path) -> list[Path]:
    """The nudge files waiting in the run's nudges/ folder, in the order they were sent; none while
    the channel is `blocked`. A file that is a symbolic link is listed (never followed): `read`
    refuses it."""
    folder = Path(run_dir) / NUDGES_DIR
    if not folder.is_dir() or blocked(run_dir) is not None:
        return []
    return sorted(Path(e.path) for e in os.scandir(folder) if e.name.endswith(".json") and not e.name.startswith(".")
                  and (e.is_symlink() or e.is_file(follow_symlinks=False)))


def read(path: str | Path) -> Nudge:
    """The nudge in one file. Raises ValueError when it is not a well-formed nudge, or is a link."""
    path = Path(path)
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
            body = json.loads(f.read())
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"nudge {path.name}: a symbolic link, not read") from None
        raise ValueError(f"nudge {path.name}: unreadable ({exc})") from None
    except ValueError as exc:
        raise ValueError(f"nudge {path.name}: unreadable ({exc})") from None
    if not isinstance(body, dict) or not isinstance(body.get("set", {}), dict):
        raise ValueError(f"nudge {path.name}: expected an object with a 'set' table")
    rollback, stop = body.get("rollback", False), body.get("stop", False)
    if not isinstance(rollback, bool) or not isinstance(stop, bool):
        raise ValueError(f"nudge {path.name}: 'rollback' and 'stop' must be true or false")
    changes = body.get("set", {})
    for key, value in changes.items():
        _check_value(key, value)
    return Nudge(changes=changes, rollback=rollback, stop=stop, name=path.name)


def archive(path: str | Path, *, refused: bool = False) -> bool:
    """Move a handled nudge file to nudges/applied/ (or nudges/refused/); True once it is out of the
    queue. Both folders are opened without following links: when one is a link (or not a folder)
    the file stays where it is (False), and `pending` lists nothing while that lasts."""
    path = Path(path)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        queue = os.open(path.parent, flags)
    except OSError:
        return False
    try:
        sub = REFUSED_DIR if refused else APPLIED_DIR
        with contextlib.suppress(FileExistsError):
            os.mkdir(sub, dir_fd=queue)
        try:
            into = os.open(sub, flags, dir_fd=queue)
        except OSError:
            return False
        try:
            os.replace(path.name, path.name, src_dir_fd=queue, dst_dir_fd=into)
        except FileNotFoundError:
            pass  # already moved (a resumed loop handling it a second time)
        finally:
            os.close(into)
        return True
    finally:
        os.close(queue)


# --- the command ----------------------------------------------------------------------------------


def command(args: argparse.Namespace) -> int:
    """`caviar nudge NAME key=value ... [--rollback] [--stop]`: 0 once the nudge is queued.

    Raises ValueError (exit 2, one line; nothing is sent) when the run is not being babysat, or a
    key or value would be refused.
    """
    path, nudge = queue(args.out, args.run, args.changes, rollback=args.rollback, stop=args.stop)
    print(f"nudged {args.run}: {nudge.describe()} (applied at the next epoch boundary; {path.name})")
    return 0


def queue(out: str | Path, run: str, texts: Sequence[str], *, rollback: bool = False,
          stop: bool = False) -> tuple[Path, Nudge]:
    """Check a nudge of the babysat run `out/run` and send it: the one path of every nudge, from the
    command line or from `caviar serve`. `texts`: "key=value" items, read as the command line reads them.

    Returns (the nudge file, the nudge). Raises ValueError (one line; nothing is sent) when the run is
    not being babysat (or not yet past its first epoch), or a key or value would be refused.
    """
    from caviar.config.job import load_job
    from caviar.store.lock import holder
    from caviar.store.vocabulary import validate_run_name

    validate_run_name(run)
    run_dir = Path(out) / run
    changes = parse_changes(texts)
    if not changes and not rollback and not stop:
        raise ValueError("nudge: nothing to send; give KEY=VALUE, --rollback or --stop")
    if not (run_dir / "job.toml").is_file():
        raise ValueError(f"run: no run {run!r} under {out}")
    running = holder(run_dir)
    if running is None or running.kind != "babysit":
        raise ValueError(f"run: {run!r} is not being babysat right now (start it with `caviar babysit`)")
    if not running.open:  # its folder is still the old one, which --overwrite is about to replace
        raise ValueError(f"run: {run!r} is starting (training its first epoch); nudge it once its "
                         "first epoch is shown")
    validate_changes(changes, load_job(run_dir / "job.toml").model)
    nudge = Nudge(changes=changes, rollback=rollback, stop=stop)
    return send(run_dir, nudge), nudge
