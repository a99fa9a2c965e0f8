"""The package's shape: data flows one way, so no module of derta_mlx imports itself back."""

import ast
from pathlib import Path

import derta_mlx

PACKAGE = Path(derta_mlx.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports(path: Path, modules: set) -> set:
    """Modules of derta_mlx that `path` imports, at module level or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:  # `from . import hub` imports a module, `from .x import f` a name
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: internal_imports(path, set(paths)) for name, path in paths.items()}


def find_cycle(graph: dict):
    """One import cycle as a list of modules, or None (depth-first search)."""
    state, trail = {}, []

    def visit(node):
        state[node] = "open"
        trail.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        trail.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# The packages in the order data flows through them: each may import only those before it.
LAYERS = ["common", "accel", "testing", "demo", "data", "models", "train", "probe", "eval", "fuse", "cli", "api", "__main__"]


def test_packages_import_only_the_layers_before_them():
    def package(module):
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else None  # None: derta_mlx itself (its version)

    for module, deps in import_graph().items():
        here = package(module)
        for dep in deps:
            there = package(dep)
            if here is None or there is None or there == here:
                continue
            assert LAYERS.index(there) < LAYERS.index(here), f"{module} imports {dep}: {there} comes after {here}"
