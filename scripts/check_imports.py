"""The import rules of docs/architecture.md, checked on the source tree: jobs are leaves, layers point down.

Every ``import`` and ``from ... import`` of a first-party package (top level or inside a function, and
``importlib.import_module`` of a literal or f-string name) is matched against :data:`RULES`: the longest unit
that names the importing module says which units it may import. A module of ``jobs`` may import no module of
``jobs`` (a job is a leaf: what two jobs need lives in the library), and nothing under ``facelink``, ``udfs``
or ``schemas`` imports ``jobs``. ``udfs`` stays free of Spark (it runs inside executors' Python workers).

Run: ``.venv/bin/python scripts/check_imports.py [ROOT]`` (``make lint`` runs it). Exit code 1 and one line
per violation (``path:line: <importer> imports <imported>: <rule>``) when a rule is broken.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

#: First-party top-level packages.
FIRST_PARTY = ("facelink", "jobs", "udfs", "schemas", "bench", "dags", "tests", "scripts")
#: Folders checked.
CHECKED = ("facelink", "jobs", "udfs", "schemas", "bench", "dags", "scripts")

#: Shared by every library package: configuration, errors, identifiers, the session and job contract, the
#: model registry of the configuration, rates and metrics, labelled-data helpers.
CORE = (
    "facelink.config", "facelink.errors", "facelink.identifiers", "facelink.session", "facelink.cli",
    "facelink.progress", "facelink.hygiene", "facelink.registry", "facelink.metrics", "facelink.rates",
    "facelink.identity_fixes", "facelink.lfw", "facelink.sample",
)
_BASE = (*CORE, "udfs", "schemas")

#: Unit -> the units its modules may import (a unit always may import itself). The longest unit naming a
#: module applies; docs/architecture.md shows the same map, one line per unit.
RULES: dict[str, tuple[str, ...]] = {
    "schemas": (),
    "udfs": (),
    **{unit: _BASE for unit in CORE},
    "facelink.lake": _BASE,
    "facelink.ingest": (*_BASE, "facelink.lake"),
    "facelink.extraction": (*_BASE, "facelink.lake"),
    "facelink.index": (*_BASE, "facelink.lake"),
    "facelink.search": (*_BASE, "facelink.lake", "facelink.index"),
    "facelink.dq": (*_BASE, "facelink.lake"),
    "facelink.report": (*_BASE, "facelink.lake", "facelink.search"),
    "facelink.evaluation": (*_BASE, "facelink.lake", "facelink.extraction", "facelink.index", "facelink.search"),
    "facelink.nightly": (*_BASE, "facelink.report"),
    "jobs": ("facelink", "udfs", "schemas"),
    "dags": ("facelink",),
    "bench": ("bench", "jobs", "facelink", "udfs", "schemas"),
    "scripts": (),
    "tests": FIRST_PARTY,
}
#: Third-party packages a unit must not import.
BANNED_THIRD_PARTY: dict[str, tuple[str, ...]] = {"udfs": ("pyspark",), "schemas": ()}
#: Dispatch by name that the rules allow: the local nightly runner calls each job's ``main`` by name, as the
#: Airflow DAG runs ``jobs/<job>.py`` with spark-submit (it imports no job's code to use it).
DISPATCH = {"facelink.nightly": ("jobs",)}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    importer: str
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}: {self.rule}"


def module_name(path: Path, root: Path) -> str:
    """Dotted module name of ``path`` under ``root`` (``pkg/__init__.py`` -> ``pkg``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str, units: Sequence[str]) -> str | None:
    """The longest unit that is ``module`` or a package above it."""
    best = None
    for unit in units:
        if (module == unit or module.startswith(unit + ".")) and (best is None or len(unit) > len(best)):
            best = unit
    return best


def within(module: str, unit: str) -> bool:
    return module == unit or module.startswith(unit + ".")


def _dynamic_name(node: ast.Call) -> str | None:
    """The module name of ``importlib.import_module("x.y")`` or ``import_module(f"x.{...}")`` (its literal head)."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name != "import_module" or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value).rstrip(".") or None
    return None


def imports_of(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str, bool]]:
    """``(line, imported module, dynamic)`` for every import in ``tree`` (relative ones resolved)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, False
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target, False
            for alias in node.names:  # ``from facelink import tables`` imports facelink.tables
                yield node.lineno, f"{target}.{alias.name}", False
        elif isinstance(node, ast.Call):
            name = _dynamic_name(node)
            if name:
                yield node.lineno, name, True


def check_module(path: Path, root: Path) -> list[Violation]:
    """The violations of one source file."""
    module = module_name(path, root)
    importer_unit = unit_of(module, list(RULES))
    rel = path.relative_to(root).as_posix()
    if importer_unit is None and module in FIRST_PARTY:  # a bare package root (facelink/__init__.py)
        return []
    if importer_unit is None:  # the tree must agree with the map: every module belongs to a unit
        return [Violation(rel, 1, module, "-", "the module belongs to no unit of the map (add it to RULES and "
                          "docs/architecture.md, or move it into a package)")]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[Violation] = []
    seen: set[tuple[int, str]] = set()
    for line, imported, dynamic in imports_of(tree, module, path.name == "__init__.py"):
        top = imported.split(".")[0]
        if top not in FIRST_PARTY:
            banned = [b for b in BANNED_THIRD_PARTY.get(importer_unit.split(".")[0], ()) if within(imported, b)]
            if banned and (line, top) not in seen:
                seen.add((line, top))
                out.append(Violation(rel, line, module, imported, f"{importer_unit} must not import {banned[0]}"))
            continue
        if within(module, "jobs") and within(imported, "jobs") and imported != "jobs":
            if (line, "jobs") not in seen:
                seen.add((line, "jobs"))
                out.append(Violation(rel, line, module, imported, "a job never imports another job"))
            continue
        target_unit = unit_of(imported, list(RULES)) or top
        if target_unit == importer_unit or within(imported, importer_unit) or imported in ("facelink",):
            continue
        allowed = RULES[importer_unit]
        if dynamic and any(within(imported, d) for d in DISPATCH.get(importer_unit, ())):
            continue
        if not any(within(imported, a) or within(target_unit, a) for a in allowed):
            key = (line, target_unit)
            if key not in seen:
                seen.add(key)
                out.append(Violation(rel, line, module, imported, f"{importer_unit} may not import {target_unit}"))
    return out


def check_tree(root: Path, folders: Sequence[str] = CHECKED) -> list[Violation]:
    """The violations of every ``.py`` file under ``folders`` of ``root``."""
    out: list[Violation] = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            out.extend(check_module(path, root))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[1]))
    args = parser.parse_args(argv)
    violations = check_tree(Path(args.root))
    for v in violations:
        print(v)
    if violations:
        print(f"{len(violations)} import(s) break the rules of docs/architecture.md", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
