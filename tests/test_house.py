"""House rules: the architecture of caviar/, checked by reading its source (no imports, no Ray).

caviar is layered so data flows one way: `store` (the files on disk) and `config` (the job) are
foundations that everything imports and that import nothing above them; `search` decides, `sweep`
and `babysit` drive, `views` read results. A layer that imports upward, an import cycle, or a module
that keeps growing makes the next change harder, and no behavioural test notices until too late.
These tests notice the day it happens, with the file and line to fix.

The rules are data (`MAX_MODULE_LINES`, `MAX_FUNCTION_LINES`, `LAYERS`): change the table, not the
tests. The helpers are pure functions of a path, and `test_the_house_checks_can_fail` runs them on
a small fake package so the rules cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "caviar"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
FACADE = "caviar"  # caviar/__init__.py re-exports the public names: exempt from the layer rules


@dataclass(frozen=True)
class Layer:
    """Modules at or under `importer` must not import anything at or under a `forbidden` prefix,
    except the exact modules in `allowed`; modules at or under an `exempt` prefix are outside the rule."""

    importer: str
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()
    exempt: tuple[str, ...] = ()


LAYERS: tuple[Layer, ...] = (
    Layer("caviar.store", ("caviar.config", "caviar.search", "caviar.trainers", "caviar.sweep", "caviar.babysit",
                           "caviar.views", "caviar.nn", "caviar.cli", "caviar.lifecycle")),
    # The job may use the store's shared words (Mode, Status, column names), nothing else of it.
    Layer("caviar.config", ("caviar.store", "caviar.search", "caviar.trainers", "caviar.sweep", "caviar.babysit",
                            "caviar.views", "caviar.nn", "caviar.cli", "caviar.lifecycle"),
          allowed=("caviar.store.vocabulary",)),
    Layer("caviar.search", ("caviar.trainers", "caviar.sweep", "caviar.babysit", "caviar.views", "caviar.nn",
                            "caviar.cli", "caviar.lifecycle")),
    Layer("caviar.views", ("caviar.sweep", "caviar.babysit", "caviar.nn", "caviar.trainers", "caviar.cli",
                           "caviar.lifecycle")),
    Layer("caviar.sweep", ("caviar.babysit", "caviar.views.report", "caviar.cli")),
    Layer("caviar.babysit", ("caviar.sweep", "caviar.cli")),
    # The population driver may use the sweep's Ray plumbing (session, worker count, stopping actors),
    # never the other way round but through the one hand-off in caviar.sweep.command.
    # It applies the babysitter's pure rules (improvement, regression) to its best, from their one home.
    Layer("caviar.population", ("caviar.babysit", "caviar.views.report", "caviar.cli"),
          allowed=("caviar.babysit.policy",)),
    # The web app is a view that may also send a nudge, through the nudge channel's one entry.
    Layer("caviar.serve", ("caviar.sweep", "caviar.babysit", "caviar.nn", "caviar.trainers", "caviar.cli",
                           "caviar.lifecycle"), allowed=("caviar.babysit.nudges",)),
    Layer("caviar.data", ("caviar",), allowed=("caviar.config.messages", "caviar.config.values", "caviar.datafiles")),
    Layer("caviar.datafiles", ("caviar",), allowed=("caviar.config.messages",)),
    # The built-in trainer is reached by name through the trainer registry, never imported directly;
    # the registry (caviar.trainers) may import the package caviar.nn, but none of its submodules.
    Layer("caviar", ("caviar.nn",), exempt=("caviar.nn", "caviar.trainers")),
    Layer("caviar.trainers", ("caviar.nn",), allowed=("caviar.nn",)),
    # PyTorch is optional: only the examples import the adapter, and the adapter sees no driver.
    Layer("caviar", ("caviar.torch", "caviar.examples"), exempt=("caviar.torch", "caviar.examples")),
    Layer("caviar.torch", ("caviar.sweep", "caviar.babysit", "caviar.views", "caviar.cli", "caviar.lifecycle")),
)


# ---- helpers: pure functions of the source --------------------------------------------------------

def under(module: str, prefix: str) -> bool:
    """`module` is `prefix` or inside it (`caviar.config` is not under `caviar.conf`)."""
    return module == prefix or module.startswith(prefix + ".")


def modules(package: Path = PACKAGE) -> list[Path]:
    return sorted(package.rglob("*.py"))  # sub-packages included: nothing is skipped but non-.py files


def tree(path: Path) -> ast.Module:
    """The parsed module, or an empty one if it does not parse (half-edited): one test reports those,
    and the other rules still judge every module that does parse."""
    try:
        return ast.parse(path.read_text(), str(path))
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])


def where(path: Path, root: Path = ROOT) -> str:
    return path.relative_to(root).as_posix()


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str, root: Path = ROOT) -> bool:
    base = root.joinpath(*name.split("."))
    return base.with_name(base.name + ".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) for every import of the path's own top-level package, anywhere in the file:
    a lazy import inside a function is still a dependency. `from p import name` means the module
    `p.name` when that is a module file, else `p` itself. `import p.m` counts as p.m only, and an
    import of a package is not one of its submodules: else every re-exporting __init__ is a cycle."""
    me = module_name(path, root)
    top = me.split(".")[0]
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            found |= {(node.lineno, alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: climb from this module's package
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parents + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add((node.lineno, sub if alias.name != "*" and is_module(sub, root) else base))
    return sorted((line, target) for line, target in found if under(target, top))


def import_graph(package: Path = PACKAGE, root: Path = ROOT) -> dict[str, set[str]]:
    return {module_name(p, root): {t for _, t in imports_of(p, root)} for p in modules(package)}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}  # visiting order
    low: dict[str, int] = {}  # lowest index reachable: equal to its own at the root of a component
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[tuple[int, str, int]]:
    """(line, name, length) of every function or method longer than `limit`, nested ones included."""
    return sorted((node.lineno, node.name, node.end_lineno - node.lineno + 1)
                  for node in ast.walk(tree(path))
                  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.end_lineno - node.lineno + 1 > limit)


def prose(path: Path) -> list[tuple[int, str]]:
    """(first line, text) of every docstring and comment."""
    found = [(node.body[0].lineno, doc) for node in ast.walk(tree(path))
             if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
             and (doc := ast.get_docstring(node, clean=False)) is not None]
    try:
        with path.open() as f:
            found += [(t.start[0], t.string) for t in tokenize.generate_tokens(f.readline)
                      if t.type == tokenize.COMMENT]
    except (tokenize.TokenError, SyntaxError):  # half-edited: test_every_module_parses says so
        pass
    return found


# ---- the house rules ------------------------------------------------------------------------------

def test_every_module_parses():
    broken = []
    for p in modules():
        try:
            ast.parse(p.read_text(), str(p))
        except SyntaxError as exc:
            broken.append(f"{where(p)}:{exc.lineno} {exc.msg}")
    assert not broken, "modules the other rules cannot read:\n" + "\n".join(broken)


def test_no_module_is_over_400_lines():
    too_long = [f"{where(p)} ({n} lines)" for p in modules()
                if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines; split them by role:\n" + "\n".join(too_long)


def test_no_function_is_over_60_lines():
    too_long = [f"{where(p)}:{line} {name} ({n} lines)" for p in modules() for line, name, n in long_functions(p)]
    assert not too_long, (f"functions over {MAX_FUNCTION_LINES} lines; name their steps as functions:\n"
                          + "\n".join(too_long))


def test_no_module_imports_a_module_that_imports_it_back():
    graph = import_graph()
    lines = {module_name(p): imports_of(p) for p in modules()}
    report = []
    for cycle in cycles(graph):
        edges = [f"    {m}:{line} -> {t}" for m in cycle for line, t in lines[m] if t in cycle]
        report.append(" <-> ".join(cycle) + "\n" + "\n".join(edges))
    assert not report, "import cycles (lazy imports included):\n" + "\n".join(report)


def layer_violations(layers: tuple[Layer, ...] = LAYERS, package: Path = PACKAGE, root: Path = ROOT) -> list[str]:
    found = []
    for path in modules(package):
        if (me := module_name(path, root)) == FACADE:
            continue
        for line, target in imports_of(path, root):
            for rule in layers:  # the first rule broken names the import; one line per import
                if (under(me, rule.importer) and not any(under(me, e) for e in rule.exempt)
                        and target not in rule.allowed and any(under(target, f) for f in rule.forbidden)):
                    found.append(f"{where(path, root)}:{line} imports {target} ({rule.importer} must not import "
                                 f"{next(f for f in rule.forbidden if under(target, f))})")
                    break
    return found


def test_foundations_never_import_the_layers_above_them():
    violations = layer_violations()
    assert not violations, "imports against the layering (see LAYERS):\n" + "\n".join(violations)


def test_every_subpackage_says_its_role_in_its_init_docstring():
    packages = sorted({d for p in modules() for d in p.parents if d != PACKAGE and PACKAGE in d.parents})
    missing = [f"{where(d)}/__init__.py" + ("" if (d / "__init__.py").is_file() else " (missing)")
               for d in packages
               if not (d / "__init__.py").is_file() or not ast.get_docstring(tree(d / "__init__.py"))]
    assert not missing, "sub-packages without a docstring saying their role:\n" + "\n".join(missing)


def test_docstrings_and_comments_cite_only_documents_that_exist():
    cited = re.compile(r"\b[A-Z][A-Z_]+\.md\b")
    dangling = [f"{where(p)}:{line + text[:m.start()].count(chr(10))} cites {m.group()}"
                for p in modules() for line, text in prose(p) for m in cited.finditer(text)
                if m.group() != "README.md" and not (ROOT / m.group()).is_file()]
    assert not dangling, "citations of files that are not in the repository:\n" + "\n".join(dangling)


# ---- the checks themselves can fail ---------------------------------------------------------------

def test_the_house_checks_can_fail(tmp_path: Path):
    """A fake package with an injected lazy-import cycle, a 61-line function and upward imports: the
    helpers find them all, and resolve absolute, relative and package imports as the rules rely on."""
    pkg = tmp_path / "fakepkg"
    (pkg / "sub").mkdir(parents=True)
    def body(n: int) -> str:  # def line + n lines + return line = n + 2 lines
        return "".join(f"    x{i} = {i}\n" for i in range(n))
    sources = {
        "__init__.py": '"""A fake package."""\n',
        "a.py": "import os\nfrom fakepkg import b\nfrom fakepkg.sub import NAME\n",
        "b.py": f"def long():\n{body(59)}    return 0\n\n\ndef just_fits():\n{body(58)}    return 0\n\n\n"
                "def lazy():\n    from . import a\n",
        "sub/__init__.py": "NAME = 1\n",
        "sub/c.py": "from ..a import thing\nfrom . import c\nimport fakepkg.b as bee\n",
    }
    for name, text in sources.items():
        (pkg / name).write_text(text)

    assert module_name(pkg / "sub" / "__init__.py", tmp_path) == "fakepkg.sub"
    assert imports_of(pkg / "a.py", tmp_path) == [(2, "fakepkg.b"), (3, "fakepkg.sub")]
    assert imports_of(pkg / "sub" / "c.py", tmp_path) == [(1, "fakepkg.a"), (2, "fakepkg.sub.c"), (3, "fakepkg.b")]
    assert cycles(import_graph(pkg, tmp_path)) == [["fakepkg.a", "fakepkg.b"], ["fakepkg.sub.c"]]
    assert long_functions(pkg / "b.py") == [(1, "long", 61)]
    layers = (Layer("fakepkg.sub", ("fakepkg.a", "fakepkg.b"), allowed=("fakepkg.b",)),
              Layer("fakepkg", ("fakepkg.sub",), exempt=("fakepkg.sub",)))
    assert layer_violations(layers, pkg, tmp_path) == [
        "fakepkg/a.py:3 imports fakepkg.sub (fakepkg must not import fakepkg.sub)",
        "fakepkg/sub/c.py:1 imports fakepkg.a (fakepkg.sub must not import fakepkg.a)"]
    assert cycles({"x": {"y"}, "y": {"z"}, "z": set()}) == []
