"""The import contract, read from the source (every import statement, at the top of a module or inside a function):
nothing imports upward, only the backends import torch, and the two faces (the dashboard's pages, the CLI) change
nothing in the store themselves: every change goes through `aio_core.workflows`, and from `db` they import only what
reads. A new import that breaks a rule fails here with the file, the line and the rule."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def modules() -> dict[str, Path]:
    found = {"dashboard": ROOT / "dashboard.py"}
    for package in ("aio_core", "db", "app_pages"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, module, names imported from it) for every import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, tuple(alias.name for alias in node.names)))
    return found


# The core's leaf modules, which the backends are built on: settings and what settings and prompts are made of.
BASE = {"aio_core.settings", "aio_core.errors", "aio_core.profiles", "aio_core.templating", "aio_core.prompts",
        "aio_core.bench_texts", "aio_core.channels"}


def layer(module: str) -> str:
    """Where a module sits, bottom to top: db < base < backends < core < workflows < measure < cli < pages."""
    if module.startswith("db"):
        return "db"
    if module in BASE:
        return "base"
    if module.startswith("aio_core.backends"):
        return "backends"
    if module.startswith("aio_core.workflows"):
        return "workflows"
    if module.startswith("aio_core.measure"):
        return "measure"
    if module in ("aio_core.cli", "aio_core.__main__"):
        return "cli"
    if module.startswith("app_pages") or module == "dashboard":
        return "pages"
    return "core"


ORDER = ("db", "base", "backends", "core", "workflows", "measure", "cli", "pages")
# What the faces may import from the store: queries, constants and types. Everything that changes the store is
# reached through aio_core.workflows (a new entry here must be a read, never a write).
READS = {
    "db.access": {"ACTIONS", "PAGES", "ROLES", "EVERYTHING", "Scope"},
    "db.alerts": {"ACTIVE", "STATUSES", "RULE", "list_alerts"},
    "db.batches": {"BatchView", "batch_rows", "count_rows", "list_batches"},
    "db.corrections": {"corrections_count", "zero_shot_count"},
    "db.jobs": {"JobView", "list_jobs"},
    "db.labels": {"RISKY", "RISK_LEVELS"},
    "db.phrases": {"read_phrase"},
    "db.reports": {"SOURCES", "Filters", "groups", "overview_report", "person_names", "person_report",
                   "rank_people"},
    "db.rules": {"AlertRule"},
    "db.session": {"make_db", "reading", "WriteHolds"},
    "db.store": {"chat_history", "list_people"},
    "db.users": {"SignInError", "Viewer", "count_users", "get_setting", "list_users"},
}


def test_nothing_imports_upward():
    broken = []
    for name, path in modules().items():
        mine = layer(name)
        for line, target, _ in imports(path):
            if not target.startswith(("aio_core", "db", "app_pages", "dashboard")):
                continue
            theirs = layer(target)
            if ORDER.index(theirs) > ORDER.index(mine):
                broken.append(f"{path.relative_to(ROOT)}:{line} ({mine}) imports {target} ({theirs})")
            elif mine == "workflows" and theirs == "measure":
                broken.append(f"{path.relative_to(ROOT)}:{line}: a workflow depends on the measurements")
    assert not broken, ("imports against the layers (db < base < backends < core < workflows < measure < cli < "
                        "pages):\n" + "\n".join(broken))


def test_only_the_backends_import_torch():
    broken = [f"{path.relative_to(ROOT)}:{line}" for name, path in modules().items() if layer(name) != "backends"
              for line, target, _ in imports(path) if target.split(".")[0] in ("torch", "transformers")]
    assert not broken, "torch or transformers imported outside aio_core/backends: " + ", ".join(broken)


def test_the_pages_and_the_cli_change_the_store_only_through_workflows():
    faces = {name: path for name, path in modules().items() if layer(name) in ("pages", "cli")}
    assert "aio_core.cli" in faces and "app_pages.trends" in faces and "dashboard" in faces
    broken = []
    for path in faces.values():
        for line, target, names in imports(path):
            if target == "db" or target.startswith("db."):
                allowed = READS.get(target, set())
                for imported in names or ("(the whole module)",):
                    if imported not in allowed:
                        broken.append(f"{path.relative_to(ROOT)}:{line}: {target}.{imported}")
    assert not broken, ("a page or the CLI imports from db something that is not a read; call the workflow that "
                        "does it instead:\n" + "\n".join(broken))


def test_the_contract_catches_what_it_is_for(tmp_path):
    """The checks above read real import statements: a write function imported by a page, and a store module
    importing the engine, are both seen."""
    page = tmp_path / "page.py"
    page.write_text("from db.privacy import audit\nfrom db.reports import groups\n")
    assert [(t, n) for _, t, n in imports(page)] == [("db.privacy", ("audit",)), ("db.reports", ("groups",))]
    assert "audit" not in READS.get("db.privacy", set()) and "groups" in READS["db.reports"]
    store = tmp_path / "store.py"
    store.write_text("def f():\n    from aio_core.engine import get_engine\n")
    ((_, target, _),) = imports(store)
    assert ORDER.index(layer(target)) > ORDER.index(layer("db.store"))
