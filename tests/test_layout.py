"""The package's architecture, checked from its source: what imports JAX, how big a module may be,
and which folders may depend on which.

* `import tpcompile`, `tpcompile.load_program` and `tpcompile check` run without importing JAX
  (checked in a fresh interpreter, since this test process has imported it long ago);
* no module under tpcompile/ is longer than MAX_LINES;
* the graph of tpcompile-internal imports (every `import` statement, including those inside
  functions; not those under `if TYPE_CHECKING:`) has no cycle;
* the folders are layered: lang/ and ir/ never reach jax, runtime/ never reaches sympy or
  kernels/, and lang/, ir/, prims/, kernels/ never reach codegen/, finite/, api or cli ("reach":
  import directly, or import a tpcompile module that does, at any depth).

`python tests/test_layout.py` prints the import graph (each module and the modules it imports).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tpcompile"
MAX_LINES = 400


# --------------------------------------------------------------------------------------------------
# The import graph, from the source


def module_name(path: Path) -> str:
    """tpcompile/kernels/graph.py -> tpcompile.kernels.graph; a package's __init__.py -> the
    package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (functions, classes, try blocks), except the bodies
    of `if TYPE_CHECKING:` (their `else:` is still run, so it is kept)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Dotted names `name` imports: tpcompile modules resolved to a module of `modules` (`from
    tpcompile.x import y` is tpcompile.x.y if that is a module, else tpcompile.x), and external
    ones as written (`jax.numpy`, `sympy`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(_resolve(a.name, modules) for a in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: from .x import y, from .. import z
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        for alias in node.names:
            full = f"{base}.{alias.name}"
            out.add(full if full in modules else _resolve(base, modules))
    return out


def _resolve(dotted: str, modules: dict[str, Path]) -> str:
    """The longest prefix of `dotted` that is a tpcompile module (`import tpcompile.ir.nodes.x`
    cannot happen, but a stale name must not vanish); other names are returned unchanged."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in modules:
            return prefix
    return dotted


def import_graph() -> dict[str, set[str]]:
    """module -> every name it imports (tpcompile modules and external top-level packages)."""
    modules = package_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def internal(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle [a, b, ..., a] of the directed graph, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(edges):
        if start in state:
            continue
        path = [start]
        iters = [iter(sorted(edges[start]))]
        state[start] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(edges[nxt])))
    return None


def all_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per group of mutually dependent modules (strongly connected component with more
    than one module, or a module importing itself): every group to untangle, not only the first."""
    cycles = []
    remaining = dict(edges)
    while (cycle := find_cycle(remaining)) is not None:
        cycles.append(cycle)
        group = set(reachable(remaining, cycle[0]))
        group = {m for m in group if cycle[0] in reachable(remaining, m)}  # the component
        remaining = {m: deps - group for m, deps in remaining.items() if m not in group}
    return cycles


def reachable(edges: dict[str, set[str]], start: str) -> dict[str, str | None]:
    """Internal modules reachable from `start`, each with the module that first imported it."""
    seen: dict[str, str | None] = {start: None}
    todo = [start]
    while todo:
        m = todo.pop()
        for d in sorted(edges[m]):
            if d not in seen:
                seen[d] = m
                todo.append(d)
    return seen


def chain(seen: dict[str, str | None], end: str) -> str:
    path = [end]
    while seen[path[-1]] is not None:
        path.append(seen[path[-1]])  # type: ignore[arg-type]
    return " -> ".join(reversed(path))


def _in(module: str, *folders: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in folders)


# --------------------------------------------------------------------------------------------------
# Tests


def _fresh_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    "code",
    [
        "import tpcompile",
        "import tpcompile\n"
        "prog = tpcompile.load_program(open('examples/mlp.tp').read(), {'L': 2})\n"
        "assert prog.instrs",
        "from tpcompile.cli import main\nassert main(['check', 'examples/mlp.tp']) == 0",
    ],
    ids=["import", "load_program", "cli check"],
)
def test_front_end_does_not_import_jax(code: str) -> None:
    out = _fresh_python(code + "\nimport sys\nprint('jax' in sys.modules)")
    assert out.strip().splitlines()[-1] == "False", out


def test_the_probe_sees_jax_when_it_is_imported() -> None:
    # the same probe on the kernel compiler: it does import JAX, so the check above can fail
    out = _fresh_python(
        "import tpcompile\ntpcompile.compile\nimport sys\nprint('jax' in sys.modules)"
    )
    assert out.strip().splitlines()[-1] == "True", out


def test_no_module_exceeds_the_line_limit() -> None:
    lengths = {name: len(path.read_text().splitlines()) for name, path in package_modules().items()}
    offenders = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not offenders, f"modules over {MAX_LINES} lines (split them): " + ", ".join(
        f"{name} ({n})" for name, n in sorted(offenders.items(), key=lambda kv: -kv[1])
    )


def test_internal_imports_are_acyclic() -> None:
    cycles = all_cycles(internal(import_graph()))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_find_cycle_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    two = {"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"c"}, "e": {"a"}}
    assert all_cycles(two) == [["a", "b", "a"], ["c", "d", "c"]]


def test_import_parsing_resolves_modules_and_skips_type_checking(tmp_path: Path) -> None:
    src = (
        "from typing import TYPE_CHECKING\n"
        "from tpcompile.kernels import graph\n"  # a module: tpcompile.kernels.graph
        "from tpcompile.ir import Program\n"  # a name: the package tpcompile.ir
        "import tpcompile.errors as e\n"
        "from . import frontend\n"  # relative: tpcompile.lang.frontend
        "if TYPE_CHECKING:\n    from tpcompile.api import Compiled\n"
        "def f():\n    import jax.numpy\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(src)
    modules = dict.fromkeys(
        [
            "tpcompile.kernels",
            "tpcompile.kernels.graph",
            "tpcompile.ir",
            "tpcompile.errors",
            "tpcompile.lang",
            "tpcompile.lang.frontend",
            "tpcompile.api",
        ],
        path,
    )
    got = imports_of("tpcompile.lang.mod", path, modules)
    assert got == {
        "typing",
        "tpcompile.kernels.graph",
        "tpcompile.ir",
        "tpcompile.errors",
        "tpcompile.lang.frontend",
        "jax.numpy",
    }


# folder -> names its modules must not import, directly or through any chain of tpcompile imports
LOWER = ("tpcompile.lang", "tpcompile.ir", "tpcompile.prims", "tpcompile.kernels")
UPPER = ("tpcompile.codegen", "tpcompile.finite", "tpcompile.api", "tpcompile.cli")
LAYERS: dict[str, tuple[str, ...]] = {
    "tpcompile.lang": ("jax", "jaxlib", *UPPER),
    "tpcompile.ir": ("jax", "jaxlib", *UPPER),
    "tpcompile.prims": UPPER,
    "tpcompile.kernels": UPPER,
    "tpcompile.runtime": ("sympy", "tpcompile.kernels"),
    # built on kernel_fn's call shape only (DESIGN §5)
    "tpcompile.predict": (*LOWER, *UPPER, "tpcompile.runtime", "sklearn"),
}


def layering_problems(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a banned name by a module of a LAYERS folder or by a tpcompile module it
    reaches, as the chain of imports that leads there."""
    edges = internal(graph)
    problems = set()
    for folder, banned in LAYERS.items():
        for module in (m for m in graph if _in(m, folder)):
            seen = reachable(edges, module)
            for m in seen:
                problems.update(
                    f"{chain(seen, m)} imports {name}" for name in graph[m] if _in(name, *banned)
                )
    return sorted(problems)


def test_folder_layering() -> None:
    problems = layering_problems(import_graph())
    assert not problems, "layering violations:\n" + "\n".join(problems)


def test_layering_check_follows_chains() -> None:
    graph = {
        "tpcompile.lang.a": {"tpcompile.errors", "tpcompile.ir.b"},
        "tpcompile.ir.b": {"sympy", "jax.numpy"},
        "tpcompile.errors": set(),
        "tpcompile.runtime.c": {"numpy"},
    }
    assert layering_problems(graph) == [
        "tpcompile.ir.b imports jax.numpy",
        "tpcompile.lang.a -> tpcompile.ir.b imports jax.numpy",
    ]
    graph["tpcompile.ir.b"] = {"sympy"}
    assert layering_problems(graph) == []


def show_graph() -> str:
    """The import graph as text: each module, then what it imports (internal modules without the
    `tpcompile.` prefix, then external packages)."""
    graph = import_graph()
    lines = []
    for module in sorted(graph):
        deps = graph[module]
        inner = sorted(d.removeprefix("tpcompile.") for d in deps if d in graph and d != module)
        outer = sorted({d.split(".")[0] for d in deps if d not in graph} - {"__future__"})
        lines.append(module.removeprefix("tpcompile.") if module != "tpcompile" else module)
        lines.append("    -> " + (", ".join(inner) if inner else "(no tpcompile modules)"))
        if outer:
            lines.append("    external: " + ", ".join(outer))
    return "\n".join(lines)


if __name__ == "__main__":
    print(show_graph())
