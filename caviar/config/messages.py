"""How a field and its value are named in an error message, so every message reads the same.

`field_path` ("search.trials"), `show_value` (a value as the user wrote it, on one line), `one_line`,
`did_you_mean` and `reject_unknown`: used by the job file's checks, the dimensions, the data loader
and the trainer checks. A leaf module: it imports nothing of caviar.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any, Mapping, Sequence

import numpy as np

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def field_path(parts: Sequence[str]) -> str:
    """A dotted field path as TOML writes it: bare keys as they are, other keys quoted (one line)."""
    return ".".join(p if _BARE_KEY.fullmatch(p) else json.dumps(p) for p in parts)


def show_value(value: Any, limit: int = 120) -> str:
    """A value as the user wrote it, on one line: true, 'text', [0, 0.1], { choice = [1, 2] }, nan
    (NumPy scalars as the Python ones they hold). Cut to `limit` characters."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(show_value(v, limit) for v in value) + "]"
    elif isinstance(value, Mapping):
        items = ", ".join(f"{field_path((str(k),))} = {show_value(v, limit)}" for k, v in value.items())
        text = "{ " + items + " }" if items else "{}"
    else:
        text = one_line(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(value: Any) -> str:
    """str(value) with every run of whitespace (newlines too) as one space: a message is one line."""
    return " ".join(str(value).split()) or type(value).__name__


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """" (did you mean 'trials'?)" for the closest option, or "" when none is close."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def reject_unknown(table: Mapping[str, Any], known: Sequence[str], path: Sequence[str], *,
                   what: str = "key", list_valid: bool = False) -> None:
    """ValueError for the first key of `table` not in `known`: "search.trails: unknown key (did you
    mean 'trials'?)". The valid keys are listed when nothing is close, or always with `list_valid`."""
    for key in table:
        if key not in known:
            hint = did_you_mean(key, known)
            if list_valid or not hint:
                valid = "valid: " + (", ".join(known) or "none")
                hint = f" ({hint[2:-1]}; {valid})" if hint else f" ({valid})"
            raise ValueError(f"{field_path([*path, key])}: unknown {what}{hint}")
