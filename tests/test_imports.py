"""evar/ has no import cycle between its modules, counting imports inside functions (a lazy import is still a
dependency) and resolving relative imports.

An edge goes to the module an import names, never implicitly to the packages above it, so a package's __init__
importing its own submodules is fine; a submodule that imports a name from its package's __init__ does depend on
it. Imports under `if TYPE_CHECKING:` never run and are left out.
"""

import ast
from pathlib import Path

from helpers import ROOT


def module_names(package_dir: Path) -> dict:
    """{dotted module name: file} for every .py file under `package_dir` (a package's name for its __init__.py)."""
    modules = {}
    for path in sorted(package_dir.rglob('*.py')):
        parts = path.relative_to(package_dir.parent).with_suffix('').parts
        modules['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    return modules


def _type_checking_nodes(tree: ast.AST) -> set:
    """ids of the nodes under `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and 'TYPE_CHECKING' in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def imported_modules(name: str, path: Path, modules: dict) -> set:
    """The modules of `modules` that module `name` (file `path`) imports, anywhere in its body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = _type_checking_nodes(tree)
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - (node.level - 1)]
                base = '.'.join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            # `from pkg import sub` imports the submodule pkg.sub; `from pkg import name` reads pkg's __init__.
            for alias in node.names:
                found.add(f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph(package_dir: Path) -> dict:
    """{module: set of modules it imports} over the package's own modules."""
    modules = module_names(package_dir)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict) -> list:
    """One cycle `[a, b, ..., a]` for each strongly connected group of modules (Tarjan), sorted."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(_path_through(group, graph) for group in groups)


def _path_through(group: set, graph: dict) -> list:
    """A shortest cycle inside `group` through its first module (breadth-first search back to the start)."""
    start = min(group)
    previous, frontier = {start: None}, [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    path = [v]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return path[::-1] + [start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f'no cycle through {start} in {sorted(group)}')


def test_evar_has_no_import_cycle():
    graph = import_graph(ROOT / 'evar')
    assert len(graph) > 20 and 'evar.errors' in graph['evar.metrics']  # the graph is read, not empty
    found = cycles(graph)
    assert not found, 'import cycles in evar/: ' + '; '.join(' -> '.join(c) for c in found)


def write(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / 'pkg'


def test_checker_finds_lazy_and_relative_cycles_and_allows_packages_importing_their_submodules(tmp_path):
    pkg = write(tmp_path, {
        'pkg/__init__.py': 'from . import sub\nfrom .sub import helper\n',
        'pkg/sub/__init__.py': 'from .leaf import helper\n',
        'pkg/sub/leaf.py': 'from ..util import tool\nhelper = 1\n',
        'pkg/util.py': 'import os\n\ndef tool():\n    from .sub.leaf import helper\n    return helper\n',
        'pkg/typed.py': 'from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .other import X\n',
        'pkg/other.py': 'from pkg import typed\n',
    })
    graph = import_graph(pkg)
    assert graph['pkg'] == {'pkg.sub'}  # a package importing its own submodules
    assert graph['pkg.sub.leaf'] == {'pkg.util'} and graph['pkg.util'] == {'pkg.sub.leaf'}  # relative and lazy
    assert graph['pkg.typed'] == set() and graph['pkg.other'] == {'pkg.typed'}
    assert cycles(graph) == [['pkg.sub.leaf', 'pkg.util', 'pkg.sub.leaf']]

    (pkg / 'util.py').write_text('def tool():\n    return 1\n')
    assert cycles(import_graph(pkg)) == []
    # A submodule reading a name from its package's __init__, which imports the submodule: a real cycle.
    (pkg / 'util.py').write_text('from pkg import __version__\n')
    (pkg / '__init__.py').write_text('__version__ = 1\nfrom . import util\n')
    assert cycles(import_graph(pkg)) == [['pkg', 'pkg.util', 'pkg']]
