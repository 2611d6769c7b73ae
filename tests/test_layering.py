"""Dependencies point one way: campaigns → messaging → leads → lines → tuco.

Read from the source with `ast`, imports at module level and inside functions alike
(an import inside a function is still a dependency, only a later one).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The apps each app may import. Leads check availability through the lines' relay;
# lines know nothing of leads.
ALLOWED = {
    "tuco": set(),
    "lines": {"tuco"},
    "leads": {"tuco", "lines"},
    "messaging": {"tuco", "lines", "leads"},
    "campaigns": {"tuco", "lines", "leads", "messaging"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(app: str) -> dict[str, Path]:
    return {
        _module_name(path): path
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.relative_to(ROOT).parts
    }


MODULES = {name: path for app in ALLOWED for name, path in _modules(app).items()}


def _imported(source: str, package: str) -> set[str]:
    """Every module `source` imports, anywhere in it (dotted names, `from a import b`
    read as `a.b` when that is a module of the project)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                names.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return names


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _package(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


GRAPH = {
    module: {
        target
        for target in map(_resolve, _imported(path.read_text(), _package(module, path)))
        if target and target != module
    }
    for module, path in MODULES.items()
}


def _app(module: str) -> str:
    return module.split(".")[0]


def test_apps_import_only_the_apps_below_them():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _app(target) != _app(module) and _app(target) not in ALLOWED[_app(module)]
    )
    assert wrong == []


def _is_tasks(module: str) -> bool:
    return module.rpartition(".")[2] == "tasks"


def _cycles(app: str) -> list[list[str]]:
    """Import cycles between the modules of `app`, leaving out imports of its tasks
    module: a service queues a task (after commit) that calls back into services,
    the one cycle allowed. Everything else must form a hierarchy."""
    nodes = sorted(m for m in GRAPH if _app(m) == app)
    edges = {m: sorted(t for t in GRAPH[m] if _app(t) == app and not _is_tasks(t)) for m in nodes}
    found, state = [], {}

    def visit(module, trail):
        state[module] = "open"
        for target in edges[module]:
            if state.get(target) == "open":
                found.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in nodes:
        if module not in state:
            visit(module, [module])
    return found


def test_no_import_cycles_inside_an_app():
    cycles = {app: _cycles(app) for app in ALLOWED}
    assert {app: found for app, found in cycles.items() if found} == {}


def test_imports_inside_functions_and_relative_imports_count():
    source = (
        "from . import selectors\n"
        "def f():\n"
        "    from leads.models import Lead\n"
        "    import campaigns.services\n"
    )
    found = {_resolve(name) for name in _imported(source, "messaging")}
    assert found == {"messaging.selectors", "leads.models", "campaigns.services"}
