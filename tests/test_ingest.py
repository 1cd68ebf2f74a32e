"""Ingest on real photos and real Delta tables: accounting, rejects, idempotence, manifests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from facelink.config import Config
from facelink.errors import InputError
from jobs import ingest
from tests.images import write_huge_png
from tests.paths import LFW_DIR

GOOD = ["AJ_Cook/AJ_Cook_0001.jpg", "Aaron_Pena/Aaron_Pena_0001.jpg", "Aaron_Sorkin/Aaron_Sorkin_0001.jpg"]


def _versions(spark: SparkSession, cfg: Config) -> dict[str, int]:
    return {
        t: DeltaTable.forPath(spark, cfg.table_path(t)).history(1).first()["version"]  # type: ignore[index]
        for t in ("photos", "rejects")
    }


@pytest.fixture()
def bad_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "incoming"
    folder.mkdir()
    for i, rel in enumerate(GOOD):
        shutil.copy(LFW_DIR / rel, folder / f"R{i}.jpg")
    (folder / "E1.jpg").write_bytes(b"")
    (folder / "T1.jpg").write_text("this is not a photo\n")
    (folder / "C1.jpg").write_bytes((LFW_DIR / GOOD[0]).read_bytes()[:2500])
    write_huge_png(folder / "H1.png")
    return folder


def test_folder_with_bad_files_rejects_each_with_its_reason(spark: SparkSession, cfg: Config, bad_folder: Path) -> None:
    res = ingest.run(spark, cfg, str(bad_folder))
    assert (res.input_rows, res.new_photos, res.already_present, res.rejects) == (7, 3, 0, 4)
    photos = spark.read.format("delta").load(cfg.table_path("photos"))
    assert sorted(r.record_id for r in photos.collect()) == ["R0", "R1", "R2"]
    row = photos.filter("record_id = 'R0'").first()
    assert row is not None and (row.width, row.height, row.format, row.role) == (250, 250, "JPEG", "gallery")
    assert row.photo_id == __import__("hashlib").sha256((LFW_DIR / GOOD[0]).read_bytes()).hexdigest()
    rejects = {r.record_id: r.reason for r in spark.read.format("delta").load(cfg.table_path("rejects")).collect()}
    assert rejects == {"E1": "empty_file", "T1": "not_an_image", "C1": "corrupt_image", "H1": "too_many_pixels"}

    before = _versions(spark, cfg)
    again = ingest.run(spark, cfg, str(bad_folder))
    assert (again.new_photos, again.already_present, again.rejects, again.new_rejects) == (0, 3, 4, 0)
    assert _versions(spark, cfg) == before, "a rerun must not change photos or rejects"
    runs = spark.read.format("delta").load(cfg.table_path("runs")).filter("job = 'ingest'")
    assert runs.count() == 2
    assert {r.status for r in runs.collect()} == {"succeeded"}


def test_manifest_relative_paths_metadata_and_batch_problems(spark: SparkSession, cfg: Config, tmp_path: Path) -> None:
    photos_dir = tmp_path / "archive" / "img"
    photos_dir.mkdir(parents=True)
    for i, rel in enumerate(GOOD):
        shutil.copy(LFW_DIR / rel, photos_dir / f"{i}.jpg")
    manifest = tmp_path / "archive" / "manifest.csv"
    manifest.write_text(
        "record_id,path,region,captured_at\n"
        "A1,img/0.jpg,north,2020-01-01\n"
        "A1,img/0.jpg,north,2020-01-01\n"      # exact repeat in the batch
        "A2,img/1.jpg,south,2020-01-02\n"
        "A2,img/1.jpg,east,2020-01-02\n"       # same key, different metadata
        ",img/2.jpg,west,2020-01-03\n"         # no record id
        f"A3,{photos_dir / '2.jpg'},west,2020-01-03\n"  # absolute path
        "A4,img/missing.jpg,west,2020-01-04\n"
        "A5,nowhere/else.jpg,west,2020-01-04\n"
    )
    cfg2 = cfg.with_overrides(["ingest.partition_column=region"])
    res = ingest.run(spark, cfg2, str(manifest), role="probe")
    assert (res.input_rows, res.new_photos, res.rejects) == (8, 3, 5)
    photos = {r.record_id: r for r in spark.read.format("delta").load(cfg.table_path("photos")).collect()}
    assert set(photos) == {"A1", "A2", "A3"}
    assert photos["A1"].partition == "north" and photos["A1"].metadata["captured_at"] == "2020-01-01"
    assert photos["A3"].role == "probe"
    reasons = sorted(r.reason for r in spark.read.format("delta").load(cfg.table_path("rejects")).collect())
    assert reasons == ["conflicting_duplicate", "duplicate_in_batch", "missing_file", "missing_file",
                       "missing_record_id"]


def test_changed_photo_for_a_record_adds_a_row(spark: SparkSession, cfg: Config, tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    shutil.copy(LFW_DIR / GOOD[0], folder / "R9.jpg")
    ingest.run(spark, cfg, str(folder))
    shutil.copy(LFW_DIR / GOOD[1], folder / "R9__renewal.jpg")
    res = ingest.run(spark, cfg, str(folder))
    assert (res.new_photos, res.already_present) == (1, 1)
    rows = spark.read.format("delta").load(cfg.table_path("photos")).filter("record_id = 'R9'").count()
    assert rows == 2


def test_missing_manifest_is_a_clear_error(spark: SparkSession, cfg: Config, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="manifest not found"):
        ingest.run(spark, cfg, str(tmp_path / "nope.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("id,file\n1,a.jpg\n")
    with pytest.raises(InputError, match=r"lacks columns \['path', 'record_id'\]"):
        ingest.run(spark, cfg, str(bad))

