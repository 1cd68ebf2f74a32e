"""Index build and publication on real embeddings of the pipeline fixture."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.errors import InputError
from facelink.index import publish
from facelink.index.build import exact_search
from facelink.index.gallery import current_index, manifest_gallery_quality, searchable_faces
from facelink.index.search import load_searcher
from facelink.lake.fs import lake_fs, unpublished_versions
from facelink.lake.tables import read_table
from facelink.registry import recogniser_id
from facelink.search.plan import plan_search, rows_for_floor
from jobs import build_index
from tests.conftest import PipelineLake


def test_manifest_is_complete_and_every_face_finds_itself(spark: SparkSession, pipeline_lake: PipelineLake) -> None:
    cfg = pipeline_lake.cfg
    model_id = recogniser_id(cfg)
    version, rows = current_index(spark, cfg, model_id)
    assert version == pipeline_lake.results["build_index"].index_version  # type: ignore[attr-defined]
    faces = read_table(spark, cfg, "faces")
    gallery = searchable_faces(faces, model_id, cfg.index.gallery_quality).select("face_id", "embedding").collect()
    assert sum(r["vector_count"] for r in rows) == len(gallery)
    for row in rows:
        assert row["index_sha256"] and row["ids_sha256"] and row["recall_at_10"] == pytest.approx(1.0)
        assert row["model_id"] == model_id and row["nprobe"] >= 1
        by_score = json.loads(row["params"])["nprobe_by_score"]
        assert all(v >= 1 for v in by_score.values())
        # A run keeping candidates above a floor searches with the nprobe measured for that floor.
        floor_nprobe = rows_for_floor([row], 0.99, "floor")[0]["nprobe"]
        # The highest measured level at or below the floor decides, never wider than the top-10 nprobe.
        measured = sorted((float(key), v) for key, v in by_score.items() if float(key) <= 0.99)
        assert floor_nprobe == (min(measured[-1][1], row["nprobe"]) if measured else row["nprobe"])
        assert rows_for_floor([row], 0.99, "knn")[0]["nprobe"] == row["nprobe"]
    searcher = load_searcher(rows)
    xq = np.array([r["embedding"] for r in gallery], np.float32)
    ids = np.array([r["face_id"] for r in gallery], np.int64)
    scores, found, _ = searcher.search(xq, 2)
    exact_scores, exact = exact_search(xq, xq, 1)
    own_exact = ids[exact[:, 0]] == ids
    # Rank 1 is the face itself, or a face with an identical vector (LFW repeats a few photos): a tie.
    itself_or_tie = (found[:, 0] == ids) | (scores[:, 0] >= exact_scores[:, 0] - 1e-6)
    assert np.all(itself_or_tie[own_exact]), "ANN misses a face that exact search finds at rank 1"
    assert np.all(np.isin(ids, found[:, :2])), "every face is among its own top 2"


def test_failed_build_leaves_the_previous_version_in_force(
    spark: SparkSession, pipeline_lake: PipelineLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = pipeline_lake.cfg
    model_id = recogniser_id(cfg)
    before, rows_before = current_index(spark, cfg, model_id)
    calls = {"n": 0}
    real = publish.build_partition

    def dies_on_second(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError("killed midway")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(publish, "build_partition", dies_on_second)
    with pytest.raises(MemoryError):
        build_index.run(spark, cfg, full=True, run_id="t-index-killed")
    after, rows_after = current_index(spark, cfg, model_id)
    assert after == before and sorted(map(str, rows_after)) == sorted(map(str, rows_before))
    # the failed build's files went with it: every version prefix left under the model's folder is published
    published = [r["index_version"] for r in read_table(spark, cfg, "index_manifest").select("index_version")
                 .distinct().collect()]
    assert unpublished_versions(lake_fs(cfg), publish.index_root(cfg, model_id), published) == []
    failed = read_table(spark, cfg, "runs").filter(F.col("run_id") == "t-index-killed").first()
    assert failed is not None and failed["status"] == "failed"


def test_incremental_build_without_changes_publishes_nothing(spark: SparkSession, pipeline_lake: PipelineLake) -> None:
    cfg = pipeline_lake.cfg
    before = read_table(spark, cfg, "index_manifest").count()
    res = build_index.run(spark, cfg, run_id="t-index-again")
    assert res.rebuilt == 0
    assert read_table(spark, cfg, "index_manifest").count() == before


def _index_ids(spark: SparkSession, cfg: Config, model_id: str) -> tuple[str, set[int]]:
    """The gallery_quality the version in force was built with, and the face ids it holds."""
    _, rows = current_index(spark, cfg, model_id)
    held = [np.load(io.BytesIO(lake_fs(cfg).read_bytes(r["ids_path"])), allow_pickle=False) for r in rows]
    return str(manifest_gallery_quality(rows)), {int(i) for ids in held for i in ids}


def test_the_gallery_quality_rule_decides_which_faces_the_index_holds(
    spark: SparkSession, pipeline_lake: PipelineLake, tmp_path: Path
) -> None:
    """``flag`` (the default) indexes gallery faces failing the quality rule, ``exclude`` leaves them out; the
    manifest says which, a change of the setting rebuilds in full, and a search whose configuration disagrees
    with the index in force is refused rather than run on other faces than it says. (On a copy of the lake:
    the shared one keeps its index version.)"""
    shutil.copytree(pipeline_lake.cfg.lake_root, tmp_path / "lake")
    cfg = pipeline_lake.cfg.with_overrides([f"lake.root={tmp_path / 'lake'}"])
    model_id = recogniser_id(cfg)
    every = searchable_faces(read_table(spark, cfg, "faces"), model_id, "flag")
    failing = {int(r["face_id"]) for r in every.filter(~F.col("quality_ok")).select("face_id").collect()}
    passing = {int(r["face_id"]) for r in every.filter(F.col("quality_ok")).select("face_id").collect()}
    assert failing and passing, "the fixture's gallery has faces on both sides of the quality rule"
    assert _index_ids(spark, cfg, model_id) == ("flag", failing | passing)

    excluding = cfg.with_overrides(["index.gallery_quality=exclude"])
    with pytest.raises(InputError, match="gallery_quality=flag"):
        plan_search(spark, excluding, model_id, excluding.match.bands)
    res = build_index.run(spark, excluding, run_id="t-index-exclude")
    assert res.rebuilt == res.partitions, "a change of the rule rebuilds every partition"
    assert _index_ids(spark, excluding, model_id) == ("exclude", passing)
    assert plan_search(spark, excluding, model_id, excluding.match.bands).gallery_quality == "exclude"
    with pytest.raises(InputError, match="gallery_quality=exclude"):
        plan_search(spark, cfg, model_id, cfg.match.bands)
    assert build_index.run(spark, excluding, run_id="t-index-exclude-again").rebuilt == 0
    res = build_index.run(spark, cfg, run_id="t-index-flag")
    assert res.rebuilt == res.partitions
    assert _index_ids(spark, cfg, model_id) == ("flag", failing | passing)
    assert plan_search(spark, cfg, model_id, cfg.match.bands).audit_detail()["gallery_quality"] == "flag"
