"""Conditional dimensions: a [space] dimension that exists only when other dimensions take certain values.

In a job file a dimension's table takes one more key, `when`: each parent's name, with the values (a
list; a single value stands for a list of one) for which the dimension exists:

    optimizer = { choice = ["sgd", "momentum", "rmsprop", "adam"] }
    beta2 = { one_minus_log_uniform = [0.99, 0.9999], when = { optimizer = ["adam", "rmsprop"] } }
    momentum = { one_minus_log_uniform = [0.8, 0.99], when = { optimizer = "momentum" } }

A dimension is active when every parent its `when` names is active and takes one of the listed values.
An inactive dimension is left out of the trial's config (the trainer uses its own default) and its
`params_<name>` is null. A parent is another [space] dimension that takes countably many values (a
choice, an integer range or a fixed value); a parent of a list-valued choice lists lists
(`when = { hidden_layers = [[64, 64]] }`). Pure functions over plain data; errors are ValueErrors whose
message starts with the field ("space.beta2.when.optimizer: ...").
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from caviar.config.messages import did_you_mean, field_path, show_value
from caviar.config.values import same_value

WHEN = "when"
# parent name -> the values for which the child exists
Condition = Mapping[str, tuple[Any, ...]]
_PARENT_KINDS = ("choice", "int_uniform", "int_log_uniform", "fixed")


def split_when(spec: Any) -> tuple[Any, Any]:
    """(the dimension's own TOML value, its `when` table or None): `{ choice = [...], when = {...} }`
    gives `({ choice = [...] }, {...})`; anything else is returned as it is, with None."""
    if isinstance(spec, Mapping) and WHEN in spec:
        return {k: v for k, v in spec.items() if k != WHEN}, spec[WHEN]
    return spec, None


def check_conditions(whens: Mapping[str, Any], dimensions: Mapping[str, Any]) -> dict[str, dict[str, tuple]]:
    """Each conditional dimension's `when`, checked against the space and normalized (values as tuples).

    whens: dimension name -> its `when` as written (a table parent -> value or list of values).
    Raises ValueError naming the field: an unknown parent, a parent that is a continuous range, a value
    the parent cannot take, or a cycle (a dimension that is, through its parents, its own parent).
    """
    conditions: dict[str, dict[str, tuple]] = {}
    for name, when in whens.items():
        where = ("space", name, WHEN)
        if name not in dimensions:
            raise ValueError(f"{field_path(where)}: no dimension {name!r} in the space")
        if not isinstance(when, Mapping) or not when:
            raise ValueError(f"{field_path(where)}: expected a table of parent = [values], "
                             f"such as {{ optimizer = [\"adam\"] }}, got {show_value(when)}")
        conditions[name] = {str(parent): _values(where, str(parent), values, name, dimensions)
                            for parent, values in when.items()}
    topological_order(list(dimensions), conditions)   # raises on a cycle
    return conditions


def _values(where: tuple[str, ...], parent: str, values: Any, child: str,
            dimensions: Mapping[str, Any]) -> tuple[Any, ...]:
    path = field_path((*where, parent))
    if parent not in dimensions:
        others = [n for n in dimensions if n != child]
        raise ValueError(f"{path}: unknown parent: not a [space] dimension{did_you_mean(parent, others)}; "
                         f"valid: {', '.join(others) or 'none'}")
    if parent == child:
        raise ValueError(f"{path}: a dimension cannot be its own parent")
    dim = dimensions[parent]
    if dim.kind not in _PARENT_KINDS:
        raise ValueError(f"{path}: a parent must be a choice, an integer range or a fixed value, got "
                         f"{show_value(dim.spec())} (a continuous range takes no value twice)")
    listed = list(values) if isinstance(values, (list, tuple)) else [values]
    if not listed:
        raise ValueError(f"{path}: expected at least one value of {parent}, got []")
    for value in listed:
        if dim.kind == "fixed":
            if not same_value(dim.value, value):  # type: ignore[attr-defined]
                raise ValueError(f"{path}: {show_value(value)} is not the fixed value "
                                 f"{show_value(dim.value)}")  # type: ignore[attr-defined]
            continue
        try:
            dim.to_unit(value)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return tuple(listed)


def topological_order(names: Sequence[str], conditions: Mapping[str, Condition]) -> tuple[str, ...]:
    """`names` with every parent before its children, otherwise in the given order. ValueError on a cycle:
    "space.a.when: a cycle: a -> b -> a"."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise ValueError(f"{field_path(('space', cycle[0], WHEN))}: a cycle: {' -> '.join(cycle)}")
        state[name] = 1
        for parent in conditions.get(name, {}):
            visit(parent, path + [name])
        state[name] = 2
        order.append(name)

    for name in names:
        visit(name, [])
    return tuple(order)


def is_active(name: str, values: Mapping[str, Any], conditions: Mapping[str, Condition]) -> bool:
    """Whether `name` exists given the values drawn so far: `values` holds the active dimensions only
    (an inactive parent is absent), drawn parents first (`topological_order`)."""
    return all(parent in values and any(same_value(values[parent], v) for v in allowed)
               for parent, allowed in conditions.get(name, {}).items())


def enabling(name: str, conditions: Mapping[str, Condition]) -> dict[str, Any]:
    """Parent values under which `name` is active: each parent's first listed value, and so on up its
    ancestors (so that a check of one of its values sees it as a trial would)."""
    values: dict[str, Any] = {}
    for parent, allowed in conditions.get(name, {}).items():
        values.update(enabling(parent, conditions))
        values[parent] = allowed[0]
    return values


def active_only(config: Mapping[str, Any], order: Sequence[str], conditions: Mapping[str, Condition]) -> dict[str, Any]:
    """`config` without its inactive dimensions, in the config's own order. `order`: every
    dimension name, parents first."""
    if not conditions:
        return dict(config)
    kept: dict[str, Any] = {}
    for name in order:
        if name in config and is_active(name, kept, conditions):
            kept[name] = config[name]
    return {name: value for name, value in config.items() if name in kept or name not in order}
