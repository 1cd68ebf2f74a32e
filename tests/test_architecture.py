"""The import rules of docs/architecture.md hold on the tree, catch planted violations, and agree with the map."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from scripts.check_imports import CHECKED, RULES, check_tree, main

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_tree_keeps_the_rules() -> None:
    assert [str(v) for v in check_tree(REPO_ROOT)] == []


@pytest.fixture()
def tree_copy(tmp_path: Path) -> Path:
    """The checked folders' Python files, copied (the rules see only sources)."""
    for folder in CHECKED:
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc",
                                                                                             "results", "*.ipynb"))
    assert check_tree(tmp_path) == []
    return tmp_path


@pytest.mark.parametrize(
    ("path", "code", "rule"),
    [
        ("jobs/match.py", "from jobs.calibrate import run as _calibrate\n", "a job never imports another job"),
        ("jobs/retention.py", "\ndef _later() -> None:\n    from jobs import erase  # noqa\n",
         "a job never imports another job"),
        ("facelink/evaluation/embeddings.py", "import jobs.extract\n", "facelink.evaluation may not import jobs"),
        ("facelink/lake/tables.py", "from facelink.search.plan import plan_search\n",
         "facelink.lake may not import facelink.search"),
        ("udfs/pipeline.py", "from facelink.config import Config\n", "udfs may not import facelink.config"),
        ("udfs/embed.py", "from pyspark.sql import functions\n", "udfs must not import pyspark"),
        ("schemas/faces.py", "import importlib\n_JOB = importlib.import_module('jobs.extract')\n",
         "schemas may not import jobs"),
        ("facelink/stray.py", "X = 1\n", "belongs to no unit of the map"),
    ],
)
def test_a_planted_violation_is_caught(tree_copy: Path, path: str, code: str, rule: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    target = tree_copy / path
    target.write_text((target.read_text() if target.exists() else "") + code)
    violations = [str(v) for v in check_tree(tree_copy)]
    assert len(violations) == 1 and violations[0].startswith(f"{path}:") and rule in violations[0], violations
    assert main([str(tree_copy)]) == 1
    assert rule in capsys.readouterr().out


def test_the_map_in_architecture_md_names_every_unit_and_the_tree_has_them() -> None:
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Package map", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", section, flags=re.M)
    mapped = {name for cell in first_cells for name in re.findall(r"`([a-z_.]+)`", cell)}
    assert mapped == set(RULES), (sorted(set(RULES) - mapped), sorted(mapped - set(RULES)))
    for unit in RULES:
        path = REPO_ROOT / unit.replace(".", "/")
        assert path.is_dir() or path.with_suffix(".py").is_file(), f"{unit} is in the map but not in the tree"
