"""The raw job table before validation: `--set section.key=value` overrides.

The value is read as a TOML value (`8`, `1e-3`, `true`, `[32, 64]`, `{ log_uniform = [1e-4, 1e-1] }`,
`"text"`); text that is not a TOML value is taken as a plain string, so `--set data.source=spiral`
needs no quotes. Text that starts like a number, a list, a table or a quoted string (`1e`, `0.1.2`,
`[64,`) but is not a TOML value is a mistyped value, refused with TOML's reason rather than taken
as text and then told "expected a number". Fields that only ever hold text keep the text as typed,
so `--name 2024` names a run "2024" rather than failing as the integer 2024.

Overrides edit the raw table before validation, so a bad or unknown key is reported exactly like
the same mistake in the file (`search.trails: unknown key (did you mean 'trials'?)`).
"""

from __future__ import annotations

import copy
import re
import tomllib
from typing import Any, Mapping, Sequence

from caviar.config.messages import field_path, show_value

# Fields whose values are always strings: an override keeps its text even when it reads as TOML
# (`name=2024`, `data.source=1e3`). Names a user trainer gives in [model] are not known here.
TEXT_FIELDS = frozenset({
    ("name",),
    ("data", "source"),
    ("data", "target"),
    ("model", "trainer"),
    ("search", "sampler"),
    ("search", "scheduler"),
    ("search", "metric"),
    ("search", "mode"),
    ("babysit", "metric"),
    ("babysit", "mode"),
})

# How a number, a list, a table or a quoted string starts; plain text (spiral, adam, ./x.csv) doesn't.
_LOOKS_LIKE_A_VALUE = re.compile(r"\s*([+-]?\.?[0-9]|[\[{\"'])")
_WHERE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def parse_value(text: str) -> Any:
    """The value of `--set key=TEXT`: TEXT read as a TOML value, or TEXT itself if it is not one."""
    try:
        parsed = tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        return text
    # "1\nother = 2" parses as a document with two keys: that is text, not one value.
    if list(parsed) != ["value"]:
        return text
    return parsed["value"]


def toml_problem(text: str) -> str:
    """Why `text` is not one TOML value, in a few words ("unexpected '.' at character 4"); "" if it is one."""
    prefix = "value = "
    try:
        parsed = tomllib.loads(prefix + text)
    except tomllib.TOMLDecodeError as exc:
        reason = str(exc)
    else:
        return "" if list(parsed) == ["value"] else "more than one value"
    where = _WHERE.search(reason)
    what = (reason[: where.start()] if where else reason).strip()
    if what.startswith("Expected newline or end of document"):
        what = "unexpected"
    what = what[:1].lower() + what[1:]
    if not where or not where.group(1):
        return f"{what} at the end"
    column = int(where.group(2)) - len(prefix)
    if where.group(1) != "1" or not 1 <= column <= len(text):
        return what
    found = repr(text[column - 1])
    if what == "unexpected":
        return f"unexpected {found} at character {column}"
    return f"{what} at character {column} ({found})"


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """Split `section.key=value` into its key path and its value.

    Raises ValueError("--set: ...") when there is no `=` or a part of the key is empty.
    """
    key, sep, value_text = text.partition("=")
    parts = tuple(part.strip() for part in key.split("."))
    if not sep:
        raise ValueError(f"--set: expected KEY=VALUE (e.g. search.trials=8), got {show_value(text)}")
    if not all(parts):
        raise ValueError(f"--set: expected a key like section.key before '=', got {show_value(text)}")
    value = parse_value(value_text)
    if parts in TEXT_FIELDS:
        return parts, value if isinstance(value, (str, list, dict)) else value_text.strip()
    if isinstance(value, str) and _LOOKS_LIKE_A_VALUE.match(value_text) and (problem := toml_problem(value_text)):
        raise ValueError(f"{field_path(parts)}: {show_value(value_text.strip())} is not a valid value "
                         f"(TOML: {problem}; text goes in quotes)")
    return parts, value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of the raw job table with every override applied in order (the last one wins).

    Missing tables on the way are created (`--set data.options.noise=0.3`); a key that already
    holds a value that is not a table cannot be entered ("search.trials: ... not a table").
    """
    result = copy.deepcopy(dict(raw))
    for text in overrides:
        parts, value = parse_override(text)
        table = result
        for depth, part in enumerate(parts[:-1]):
            inner = table.setdefault(part, {})
            if not isinstance(inner, dict):
                path = field_path(parts[: depth + 1])
                raise ValueError(
                    f"{path}: holds a value, not a table, so --set {field_path(parts)}=... cannot go inside it"
                )
            table = inner
        table[parts[-1]] = value
    return result
