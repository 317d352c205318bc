"""The shape of diffana's imports: no import cycles, no import side effects.

The graph is read from the source with ``ast`` — every import statement, also those
inside functions (a function-level import that closes a cycle only hides it until a
refactor moves it to the top) — so the test needs nothing imported and sees modules
no other test loads.

Importing diffana may switch JAX to float64 and nothing else: the side-effect test
imports every module in a fresh interpreter and checks that matplotlib's backend is
untouched and that nothing is compiled with XLA (a compile at import costs every
user, also those who never call the function it serves).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import diffana

PACKAGE_ROOT = Path(diffana.__file__).resolve().parent
"""``src/diffana``."""

ALLOWED_CYCLES: dict = {}
"""Pairs of modules that may import each other (both directions), with the reason."""

ALLOWED_IMPORT_COMPILES = {
    "physics/features.py": "NOMINAL_CM_BETA, _ANGLE, _SQRT_S: the beams' CM frame computed with jnp",
}
"""Modules whose top-level code still compiles (small programs for module constants),
with the reason; each could build its constants with numpy instead."""

_IMPORT_PROBE = r"""
import importlib, json, sys, traceback
import jax.monitoring
import matplotlib

package_root, names = sys.argv[1], sys.argv[2:]
compiled_in = []


def on_event(event, *args, **kwargs):
    if event.startswith("/jax/core/compile/"):
        tops = [f.filename for f in traceback.extract_stack() if f.name == "<module>" and f.filename.startswith(package_root)]
        compiled_in.append(tops[-1][len(package_root) + 1:] if tops else "(not at import)")


def backend():
    # the stored value: reading rcParams["backend"] would resolve (and so fix) the backend
    return dict.__getitem__(matplotlib.rcParams, "backend")


jax.monitoring.register_event_duration_secs_listener(on_event)
before = backend()
import diffana
compiled_by_import_diffana = len(compiled_in)
import diffana.plot
backend_kept_by_plot = backend() is before
for name in names:
    importlib.import_module(name)
print(json.dumps({"compiled_by_import_diffana": compiled_by_import_diffana,
                  "backend_kept_by_plot": backend_kept_by_plot,
                  "backend_kept": backend() is before,
                  "compiled_in": sorted(set(compiled_in))}))
"""


def module_name(path: Path) -> str:
    """``diffana.model.model`` for ``src/diffana/model/model.py``; a package is named by
    its folder (``diffana.model`` for ``model/__init__.py``)."""
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    """Every module of diffana by dotted name."""
    return {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def imported_names(path: Path, module: str) -> list[tuple[str, int]]:
    """(dotted name, line) of everything ``path`` imports, at any depth of the file.
    ``from a import b`` gives ``a.b`` (a submodule or a name in ``a``); relative
    imports are resolved against ``module``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return names


def import_graph() -> dict[str, dict[str, int]]:
    """module → {diffana module it imports: line of the first such import}. A name is
    attributed to the longest module prefix (``diffana.model.Model`` → ``diffana.model``)."""
    modules = all_modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for name, line in imported_names(path, module):
            target = owner(name) if name.split(".")[0] == "diffana" else None
            if target is not None and target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def without_allowed(graph: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The graph less the edges between the members of each allowed pair."""
    return {
        module: {t: line for t, line in edges.items() if frozenset({module, t}) not in ALLOWED_CYCLES}
        for module, edges in graph.items()
    }


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    module = tmp_path / "diffana" / "analyses" / "example.py"
    module.parent.mkdir(parents=True)
    module.write_text("from . import names\n\ndef f():\n    from diffana.model import Model\n    import diffana.io\n")
    names = imported_names(module, "diffana.analyses.example")
    assert names == [("diffana.analyses.names", 1), ("diffana.model.Model", 4), ("diffana.io", 5)]


def test_the_cycle_finder_finds_a_cycle_and_ignores_a_chain():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": 1}, "b": {}, "c": {"b": 1}}) == []


def test_no_import_cycle_between_diffana_modules():
    graph = import_graph()
    assert "diffana.physics.generator" in graph and graph["diffana.analyses.zprime_invisible.samples"]
    found = cycles(without_allowed(graph))
    report = [
        " ; ".join(f"{m} imports {t} (line {line})" for m in cycle for t, line in graph[m].items() if t in cycle)
        for cycle in found
    ]
    assert not found, "import cycles (break them, or list the pair in ALLOWED_CYCLES with a reason):\n" + "\n".join(report)


def test_every_allowed_cycle_still_exists():
    # an entry whose cycle is gone would silently allow its return: drop it instead
    graph = import_graph()
    stale = [sorted(pair) for pair in ALLOWED_CYCLES if not _import_each_other(graph, *pair)]
    assert not stale, f"ALLOWED_CYCLES lists pairs that no longer import each other: {stale}"


def _import_each_other(graph, first, second) -> bool:
    return second in graph[first] and first in graph[second]


def test_importing_diffana_keeps_the_backend_and_compiles_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLCONFIGDIR"] = str(tmp_path)  # no user matplotlibrc choosing a backend
    names = [name for name in all_modules() if not name.endswith("__main__")]  # __main__ runs a command
    run = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, str(PACKAGE_ROOT), *names],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["compiled_by_import_diffana"] == 0
    assert found["backend_kept_by_plot"], "importing diffana.plot changed matplotlib's backend"
    assert found["backend_kept"], "importing some diffana module changed matplotlib's backend"
    unexpected = sorted(set(found["compiled_in"]) - set(ALLOWED_IMPORT_COMPILES))
    assert not unexpected, f"modules that compile with XLA at import: {unexpected}"
