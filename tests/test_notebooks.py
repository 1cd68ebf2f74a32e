"""The analysts' notebooks run headless (nbclient, the venv's ``python3`` kernel) against a small lake.

The pipeline lake of ``conftest.py`` is copied, a few reviews, data-quality results and evaluation figures are
added to the copy, and each notebook is executed with its ``parameters`` cell replaced so that it reads the
copy (``ENV = "test"``, ``LAKE_ROOT = <copy>``). Any cell error fails the test with the cell's traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.lake.tables import append, read_table
from facelink.report.notebook import det_points
from jobs.dedup import DedupResult
from schemas import get_spec
from scripts.strip_notebooks import strip
from tests.conftest import PipelineLake

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO_ROOT / "notebooks"
NAMES = ("review_queue", "duplicate_clusters", "dq_trends", "evaluation")
CELL_TIMEOUT_S = 600


def run_notebook(name: str, lake_root: Path, tmp_path: Path) -> nbformat.NotebookNode:
    """Execute ``notebooks/<name>.ipynb`` against ``lake_root``; return the executed notebook (also saved)."""
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    params = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{name}: expected exactly one cell tagged 'parameters'"
    # Keep the notebook's other parameters (run ids: None = latest); set only the environment and the lake.
    params[0].source += f'\nENV = "test"\nLAKE_ROOT = {json.dumps(str(lake_root))}\n'
    client = NotebookClient(book, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO_ROOT)}})
    client.execute()
    nbformat.write(book, tmp_path / f"{name}.executed.ipynb")
    return book


def output_text(book: nbformat.NotebookNode) -> str:
    """Every text, markdown and plain-text output of the notebook, joined."""
    parts = []
    for cell in book.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            data = out.get("data", {})
            parts += [data.get(kind, "") for kind in ("text/plain", "text/markdown")]
    return "\n".join(parts)


def images(book: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for cell in book.cells for out in cell.get("outputs", []))


def copy_lake(lake: PipelineLake, dest: Path) -> Path:
    root = dest / "lake"
    shutil.copytree(lake.cfg.lake_root, root)
    return root


def add_reviews(spark: SparkSession, cfg: Config) -> None:
    """One pair confirmed by two reviewers, one still open after one review, one match disputed."""
    pairs = read_table(spark, cfg, "duplicate_candidates").orderBy("pair_id").limit(2).collect()
    match = read_table(spark, cfg, "matches").orderBy(F.desc("score")).first()
    assert len(pairs) == 2 and match is not None, "the pipeline lake should hold candidate pairs and matches"
    now = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
    subject = f"{match['run_id']}/{match['probe_photo_id']}/{match['rank']}"
    # a decision counts for the record ids it saw: each review names its subject's current records
    ab, cd = ([p["record_id_a"], p["record_id_b"]] for p in pairs)
    ef = [match["probe_record_id"], match["candidate_record_id"]]
    rows = [
        ("r1", "pair", pairs[0]["pair_id"], pairs[0]["run_id"], ab, "alice", "same_person", None, now),
        ("r2", "pair", pairs[0]["pair_id"], pairs[0]["run_id"], ab, "bob", "same_person", None, now),
        ("r3", "pair", pairs[1]["pair_id"], pairs[1]["run_id"], cd, "alice", "different_people", None, now),
        ("r4", "match", subject, match["run_id"], ef, "alice", "same_person", None, now),
        ("r5", "match", subject, match["run_id"], ef, "bob", "different_people", "eyes differ", now),
    ]
    spec = get_spec("reviews")
    append(spark, cfg, spec, spark.createDataFrame(rows, spec.schema))


def add_dq_and_evaluations(spark: SparkSession, cfg: Config) -> None:
    """Two gate runs (one failed warning) and one evaluation run with DET operating points."""
    t0 = dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC)
    dq = [(f"q{i}", table, 1, f"{table}_suite", f"expect_{check}", severity, ok, obs, t0 + dt.timedelta(days=i))
          for i in (1, 2) for table, check, severity, ok, obs in (
              ("photos", "not_null(photo_id)", "critical", True, "0 nulls"),
              ("faces", "reject_rate", "warning", i == 1, f"{0.1 * i:.1f}"))]
    spec = get_spec("dq_results")
    append(spark, cfg, spec, spark.createDataFrame(dq, spec.schema))
    figures = [("verification", cfg_name, f"tar_at_far_{far}", "all", tar) for cfg_name, base in
               (("reference", 0.0), ("default", 0.01)) for far, tar in (("1e-2", 0.97 + base), ("1e-3", 0.9 + base))]
    figures += [("identification", "default", f"fnir_at_fpir_{fpir}", "all", fnir)
                for fpir, fnir in (("0.01", 0.05), ("0.003", 0.08))]
    figures += [("verification", "default", "fmr", group, 1e-3) for group in ("group_1", "group_2")]
    rows = [("e1", p, c, m, g, v, None, None, 0.5, 1000, "mobilefacenet", "exact", "digest", t0)
            for p, c, m, g, v in figures]
    spec = get_spec("evaluations")
    append(spark, cfg, spec, spark.createDataFrame(rows, spec.schema))


@pytest.fixture(scope="module")
def filled_lake(spark: SparkSession, pipeline_lake: PipelineLake, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_lake(pipeline_lake, tmp_path_factory.mktemp("nb_filled"))
    cfg = pipeline_lake.cfg.with_overrides([f"lake.root={root}"])
    add_reviews(spark, cfg)
    add_dq_and_evaluations(spark, cfg)
    return root


def test_notebooks_are_stored_without_outputs() -> None:
    found = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert set(NAMES) <= set(found)
    for name in found:
        book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        assert not strip(book), f"{name}.ipynb holds outputs: run scripts/strip_notebooks.py"


def test_det_points_from_operating_points() -> None:
    figures = pd.DataFrame([
        ("verification", "default", "tar_at_far_1e-3", "all", 0.9),
        ("verification", "default", "tar_at_far_1e-2", "all", 0.97),
        ("identification", "default", "fnir_at_fpir_0.003", "all", 0.08),
        ("dedup", "default", "dup_recall_at_fpir_0.01", "all", 0.75),
        ("verification", "default", "fmr", "g1", 1e-3),  # per group: not a DET point
        ("verification", "default", "tar_at_far_1e-4", "g1", 0.5),
        ("verification", "default", "accuracy", "all", 0.99),
    ], columns=["protocol", "config_name", "metric", "group_name", "value"])
    points = det_points(figures)
    assert list(points.protocol) == ["dedup", "identification", "verification", "verification"]
    assert list(points.x) == pytest.approx([0.01, 0.003, 1e-3, 1e-2])
    assert list(points.y) == pytest.approx([0.25, 0.08, 0.1, 0.03])


def test_review_queue(filled_lake: Path, tmp_path: Path) -> None:
    text = output_text(run_notebook("review_queue", filled_lake, tmp_path))
    for status in ("confirmed_same", "disputed", "open"):  # jobs.review's statuses of the reviews added
        assert status in text
    assert re.search(r"\*\*\d+ subject\(s\) open for review\*\* \(1 disputed; 1 settled\)", text), text[-3000:]


def test_duplicate_clusters(spark: SparkSession, pipeline_lake: PipelineLake, filled_lake: Path,
                            tmp_path: Path) -> None:
    book = run_notebook("duplicate_clusters", filled_lake, tmp_path)
    dedup = pipeline_lake.results["dedup"]
    assert isinstance(dedup, DedupResult)
    run_id = dedup.run_id
    clusters = read_table(spark, pipeline_lake.cfg, "duplicate_clusters").filter(F.col("run_id") == run_id)
    n = clusters.select("cluster_id").distinct().count()
    assert n > 0
    assert f"**{n} cluster(s)**" in output_text(book)
    assert images(book) >= 2
    # The pairs table shows estimated rates as the calibration supports them, never 1e-12.
    assert "beyond the measured range" in output_text(book)
    assert not re.search(r"\de-(0[7-9]|1\d)", output_text(book))


def test_dq_trends(filled_lake: Path, tmp_path: Path) -> None:
    book = run_notebook("dq_trends", filled_lake, tmp_path)
    text = output_text(book)
    assert "No data-quality results" not in text
    assert "expect_reject_rate" in text
    assert images(book) >= 1


def test_evaluation_with_results(filled_lake: Path, tmp_path: Path) -> None:
    book = run_notebook("evaluation", filled_lake, tmp_path)
    text = output_text(book)
    assert "Evaluation run **e1**" in text
    assert "tar_at_far_1e-3" in text
    assert images(book) == 1  # the DET curve


def test_evaluation_without_results_says_so(pipeline_lake: PipelineLake, tmp_path: Path) -> None:
    root = copy_lake(pipeline_lake, tmp_path)
    shutil.rmtree(root / "tables" / "evaluations", ignore_errors=True)
    book = run_notebook("evaluation", root, tmp_path)
    assert "No evaluation results in this lake" in output_text(book)
    assert images(book) == 0
