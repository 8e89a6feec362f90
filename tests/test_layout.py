"""The layout is the architecture: every import goes down the layers, and no module imports itself back.

The layers, from the bottom (README, *Layout*): a module may import its own layer and the ones
below, never one above, and the imports of all modules together have no cycle. Imports inside
functions count too: a lazy import is still a dependency.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: Each layer's packages and modules, bottom first (README, *Layout*).
LAYERS = [
    ("foundation", ["jaxgd.errors", "jaxgd.version", "jaxgd.io"]),
    ("mathematics", ["jaxgd.activations", "jaxgd.mlp", "jaxgd.costs", "jaxgd.backprop", "jaxgd.gradcheck",
                     "jaxgd.theory"]),
    ("models and data", ["jaxgd.models", "jaxgd.data"]),
    ("parallel", ["jaxgd.parallel"]),
    ("runs", ["jaxgd.runs"]),
    ("training", ["jaxgd.training"]),
    ("analysis", ["jaxgd.landscape", "jaxgd.analysis"]),
    ("interfaces", ["jaxgd.cli", "jaxgd", "jaxgd.__main__", "experiments"]),
]


def layer_of(module: str) -> int:
    """The layer of a module: that of the longest package prefix listed in :data:`LAYERS`."""
    best, level = "", None
    for i, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best):
                best, level = name, i
    if level is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and to the README's Layout")
    return level


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, pathlib.Path]:
    files = sorted((ROOT / "jaxgd").rglob("*.py")) + sorted((ROOT / "experiments").glob("*.py"))
    return {module_name(p): p for p in files}


def imports(path: pathlib.Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports, anywhere in the file (``from a.b import c`` is ``a.b.c`` when that
    is a module, else ``a.b``); an import of a project module that does not exist fails."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        else:
            continue
        for n in names:
            if n.split(".")[0] in ("jaxgd", "experiments"):
                assert n in known, f"{path.relative_to(ROOT)} imports {n}, which does not exist"
                out.add(n)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Imports against the layers' direction."""
    return sorted(f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
                  for a, targets in edges.items() for b in targets if layer_of(b) > layer_of(a))


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as the list of modules around it), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_every_module_is_in_a_layer_and_imports_go_down():
    edges = graph()
    assert "jaxgd.training.fit" in edges and "jaxgd.cli.train" in edges  # the walk found the package
    for name in edges:
        layer_of(name)
    assert upward(edges) == []


def test_no_import_cycle():
    assert cycle(graph()) is None


def test_the_checks_fail_on_a_cycle_and_on_an_upward_import():
    edges = graph()
    edges["jaxgd.costs"] = edges["jaxgd.costs"] | {"jaxgd.mlp"}
    edges["jaxgd.mlp"] = edges["jaxgd.mlp"] | {"jaxgd.costs"}
    assert set(cycle(edges)) == {"jaxgd.costs", "jaxgd.mlp"}
    edges = graph()
    edges["jaxgd.runs.rundir"] = edges["jaxgd.runs.rundir"] | {"jaxgd.training.fit"}
    assert upward(edges) == ["jaxgd.runs.rundir (runs) imports jaxgd.training.fit (training)"]


def test_the_readme_draws_these_layers():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Layout"):]
    section = section.split("\n## ")[0]
    for _, names in LAYERS:
        for name in names:
            if name.startswith("jaxgd.") and "." not in name[6:] and (ROOT / "jaxgd" / name[6:]).is_dir():
                assert f"{name[6:]}/" in section, f"the README's Layout does not show {name[6:]}/"
    for folder in (ROOT / "jaxgd").iterdir():
        if folder.is_dir() and (folder / "__init__.py").exists():
            assert any(f"jaxgd.{folder.name}" in names for _, names in LAYERS), f"jaxgd/{folder.name} is in no layer"
