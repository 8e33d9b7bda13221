"""No import cycles: between the packages of genrecsys (``genrecsys.X``), and between
the modules of one package. Every ``import`` counts, also those inside functions (a lazy
import is still a dependency); only ``if TYPE_CHECKING:`` blocks do not, since Python never
runs them. Read statically (``ast``), so nothing is imported and the test is instant."""
from __future__ import annotations

import ast
from pathlib import Path

import genrecsys

ROOT = Path(genrecsys.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ["genrecsys", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The genrecsys modules ``name`` imports (``from pkg import submodule`` names the submodule)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("genrecsys"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("genrecsys"):
                out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, iters = [start], [iter(sorted(graph.get(start, ())))]
        state[start] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph.get(nxt, ()))))
    return None


def _graph(unit) -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        for dep in imports_of(name, path, modules):
            a, b = unit(name), unit(dep)
            if a and b and a != b:
                graph.setdefault(a, set()).add(b)
    return graph


def test_the_cycle_finder_finds_cycles_and_only_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"a"}, "a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]


def test_the_import_reader_sees_lazy_imports_and_skips_type_checking_blocks(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\n"
                   "if TYPE_CHECKING:\n    from genrecsys.experiment import load_run\n"
                   "def f():\n    from genrecsys.train.loop import fit\n    from genrecsys.data import batches\n")
    modules = {"genrecsys.data.batches": src}
    assert imports_of("genrecsys.x.m", src, modules) == {"genrecsys.train.loop", "genrecsys.data",
                                                        "genrecsys.data.batches"}


def test_no_import_cycle_between_packages():
    def package(module: str) -> str | None:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 else None  # genrecsys/__init__ only re-exports

    assert (cycle := find_cycle(_graph(package))) is None, " -> ".join(cycle)


def test_no_import_cycle_between_the_modules_of_a_package():
    graph = _graph(lambda m: m)
    within = {a: {b for b in deps if b.rsplit(".", 1)[0] == a.rsplit(".", 1)[0]} for a, deps in graph.items()}
    assert (cycle := find_cycle(within)) is None, " -> ".join(cycle)
