"""The package's layers, read from its source: pooling (pure) <- modules <- models <-
training, no import circles (module-level or deferred), no module far over 400 lines."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "poolnets"


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The poolnets modules `name` imports anywhere in its source (deferred imports too),
    with the packages each import runs first (`a.b.c` runs `a/b/__init__.py`) unless they
    contain `name` itself."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    parents = {".".join(m.split(".")[:i]) for m in found for i in range(2, m.count(".") + 1)}
    found |= {p for p in parents if not (name == p or name.startswith(p + "."))}
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def test_no_import_circles():
    """Depth-first search for a cycle; the first one found is named in full."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == "open":
                return path + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = "done"
        return None

    for name in sorted(GRAPH):
        if name not in state:
            assert (cycle := visit(name, [])) is None, " -> ".join(cycle)


# Each layer may import only the layers below it.
LAYERS = ["pooling", "nnx", "linen", "models", "weights", "data", "training", "analysis",
          "report", "export"]
ALLOWED = {
    "pooling": set(),
    "nnx": {"pooling"},
    "linen": {"pooling", "nnx"},
    "weights": set(),
    "models": {"pooling", "nnx", "linen", "weights"},
    "data": set(),
}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below(layer):
    def layer_of(module: str) -> str:
        return module.split(".")[1] if module.count(".") else ""

    bad = sorted(f"{name} -> {dep}" for name, deps in GRAPH.items() if layer_of(name) == layer
                 for dep in deps if layer_of(dep) not in ALLOWED[layer] | {layer, ""})
    assert not bad, bad


def test_no_module_far_over_400_lines():
    long = {name: n for name, p in MODULES.items()
            if (n := len(p.read_text().splitlines())) > 420}
    assert not long, long
