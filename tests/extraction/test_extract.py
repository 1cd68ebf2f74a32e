"""The extract job on real photos with the real ONNX models, against the plain wrappers."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from pyspark.sql import SparkSession

from facelink.config import Config
from facelink.extraction.run import task_count
from facelink.lfw import pair_photos, read_pairs
from facelink.metrics import kfold_verification
from facelink.registry import model_spec, recogniser
from jobs import extract, ingest
from tests.paths import LFW_DIR, MODELS_DIR
from udfs.face_quality_rule import QualityRule
from udfs.pipeline import build_pipeline

PHOTOS = ["AJ_Cook/AJ_Cook_0001.jpg", "Aaron_Pena/Aaron_Pena_0001.jpg", "Abdullah_Gul/Abdullah_Gul_0001.jpg"]


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i, rel in enumerate(PHOTOS):
        shutil.copy(LFW_DIR / rel, folder / f"R{i}.jpg")
    grey = cv2.cvtColor(cv2.imread(str(LFW_DIR / PHOTOS[0])), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(folder / "G1.png"), grey)                                       # greyscale
    cv2.imwrite(str(folder / "N1.png"), np.full((200, 200, 3), 128, np.uint8))       # no face
    two = np.hstack([cv2.imread(str(LFW_DIR / p)) for p in PHOTOS[:2]])
    cv2.imwrite(str(folder / "M1.jpg"), two)                                         # two faces
    cv2.imwrite(str(folder / "S1.png"), cv2.resize(cv2.imread(str(LFW_DIR / PHOTOS[1])), (24, 24)))  # tiny
    return folder


def test_extract_rows_statuses_and_idempotence(spark: SparkSession, cfg: Config, tmp_path: Path) -> None:
    ingest.run(spark, cfg, str(_folder(tmp_path)))
    res = extract.run(spark, cfg)
    assert res.photos == 7
    assert res.tasks == 2  # one task's worth of photos, spread over the session's two cores
    faces = spark.read.format("delta").load(cfg.table_path("faces"))
    rows = {(r.record_id, r.face_index): r for r in faces.collect()}
    assert rows[("N1", -1)].status == "no_face" and rows[("N1", -1)].embedding is None
    tiny = rows.get(("S1", 0)) or rows[("S1", -1)]
    assert not tiny.quality_ok, "a 24 px photo can never pass the capture-quality rule"
    if tiny.face_index == 0:
        assert any(r.startswith("inter_eye") for r in tiny.quality_reasons), tiny.quality_reasons
    assert rows[("G1", 0)].status == "ok" and rows[("G1", 0)].is_primary
    multi = [r for (rid, _), r in rows.items() if rid == "M1"]
    assert len(multi) == 2 and sum(r.is_primary for r in multi) == 1 and multi[0].n_faces == 2
    rec = recogniser(cfg)
    for (rid, idx), r in rows.items():
        if idx >= 0:
            assert len(r.embedding) == rec.dim and abs(np.linalg.norm(r.embedding) - 1) < 1e-4, rid
            assert r.model_id == res.model_id and r.model_id.startswith(f"{rec.name}@")

    again = extract.run(spark, cfg)
    assert again.photos == 0 and faces.count() == len(rows)

    dlib = extract.run(spark, cfg, recogniser="dlib_resnet34_128d")
    assert dlib.photos == 7 and dlib.model_id.startswith("dlib_resnet34_128d@")
    by_model = {r.model_id.split("@")[0]: r["count"] for r in faces.groupBy("model_id").count().collect()}
    assert by_model == {rec.name: len(rows), "dlib_resnet34_128d": len(rows)}


@pytest.mark.parametrize(
    ("photos", "per_partition", "cores", "tasks"),
    [
        (2000, 500, 2, 4),     # full waves already
        (2100, 500, 2, 6),     # 5 tasks would leave one core idle in the third wave
        (7, 500, 2, 2),        # a small batch still uses every core
        (1, 500, 8, 1),        # never a task without a photo
        (0, 500, 2, 1),
        (1_000_000, 500, 400, 2000),
    ],
)
def test_task_count_fills_whole_waves(photos: int, per_partition: int, cores: int, tasks: int) -> None:
    assert task_count(photos, per_partition, cores) == tasks


def test_spark_embeddings_equal_the_plain_wrappers(spark: SparkSession, cfg: Config, tmp_path: Path) -> None:
    folder = tmp_path / "eq"
    folder.mkdir()
    for i, rel in enumerate(PHOTOS):
        shutil.copy(LFW_DIR / rel, folder / f"R{i}.jpg")
    ingest.run(spark, cfg, str(folder))
    extract.run(spark, cfg)
    rec = recogniser(cfg)  # the configured one: the default fuses two models, each with its own flip TTA
    pipe = build_pipeline(MODELS_DIR, model_spec(cfg, "yunet_dynamic"), rec.members,
                          detect_size=cfg.extract.detect_size, batch_size=64,
                          flip_tta=rec.member_flips(cfg.extract.flip_tta),
                          quality_rule=QualityRule(), cached=False,
                          fusion_weights=rec.weights if rec.fused else None)
    faces = spark.read.format("delta").load(cfg.table_path("faces")).filter("is_primary")
    for row in faces.collect():
        plain = pipe.process((folder / f"{row.record_id}.jpg").read_bytes()).primary
        assert plain is not None
        assert np.max(np.abs(np.asarray(row.embedding) - plain["embedding"])) < 1e-5


@pytest.mark.slow
def test_verification_accuracy_on_lfw_pairs(spark: SparkSession, cfg: Config, tmp_path: Path) -> None:
    """600 of lfw_dev's 3,000 pairs (60 same + 60 different per fold), through ingest and extract."""
    pairs = read_pairs(LFW_DIR, per_fold=60)
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("record_id,path\n" + "".join(f"{p},{LFW_DIR / p}\n" for p in pair_photos(pairs)))
    ingest.run(spark, cfg, str(manifest))
    extract.run(spark, cfg)
    emb = {
        r.record_id: np.asarray(r.embedding)
        for r in spark.read.format("delta").load(cfg.table_path("faces")).filter("is_primary").collect()
    }
    scores = np.array([float(emb[p.left] @ emb[p.right]) if p.left in emb and p.right in emb else -1.0
                       for p in pairs])
    result = kfold_verification(scores, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]))
    assert result["accuracy_mean"] >= 0.98, result
