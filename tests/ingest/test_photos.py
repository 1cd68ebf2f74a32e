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



def test_manifest_paths_outside_the_allowed_roots_are_rejects_never_reads(spark: SparkSession, cfg: Config,
                                                                          tmp_path: Path) -> None:
    archive, outside = tmp_path / "archive", tmp_path / "outside"
    (archive / "img").mkdir(parents=True)
    outside.mkdir()
    shutil.copy(LFW_DIR / GOOD[0], archive / "img" / "0.jpg")
    shutil.copy(LFW_DIR / GOOD[1], outside / "1.jpg")
    for i in range(5):  # files of the same folder that the manifest does not list: never read
        shutil.copy(LFW_DIR / GOOD[2], archive / "img" / f"unlisted{i}.jpg")
    (archive / "img" / "escape.jpg").symlink_to(outside / "1.jpg")
    (archive / "img" / "alias.jpg").symlink_to(archive / "img" / "0.jpg")
    manifest = archive / "manifest.csv"
    manifest.write_text(
        "record_id,path\n"
        "A1,img/0.jpg\n"
        "A2,../outside/1.jpg\n"
        f"A3,{outside / '1.jpg'}\n"
        "A4,img/escape.jpg\n"
        "A5,http://example.com/1.jpg\n"
        "A6,file:///etc/hostname\n"
        "A7,img/[0-9].jpg\n"
        "A8,img/alias.jpg\n"
        "A9,img/../img/0.jpg\n"
    )
    res = ingest.run(spark, cfg, str(manifest), run_id="ingest-roots-1")
    assert (res.input_rows, res.new_photos, res.rejects) == (9, 2, 7)
    assert res.input_rows == res.new_photos + res.already_present + res.rejects
    photos = {r.record_id for r in spark.read.format("delta").load(cfg.table_path("photos")).collect()}
    assert photos == {"A1", "A8"}, "a symlink that stays inside the root is read"
    rejects = {r.record_id: r.reason for r in spark.read.format("delta").load(cfg.table_path("rejects")).collect()}
    assert rejects == {"A2": "path_traversal", "A3": "outside_allowed_roots", "A4": "symlink_escape",
                       "A5": "scheme_not_allowed", "A6": "outside_allowed_roots",
                       "A7": "unsupported_path_characters", "A9": "path_traversal"}
    audit = spark.read.format("delta").load(cfg.table_path("audit")).filter("run_id = 'ingest-roots-1'").first()
    assert audit is not None and audit["counts"]["files_read"] == 2, "only the listed, allowed files are read"

    # A root the configuration names makes the outside folder readable (and only it).
    wider = cfg.with_overrides([f"ingest.allowed_roots=['<manifest>', '{outside}']"])
    again = ingest.run(spark, wider, str(manifest), run_id="ingest-roots-2")
    assert again.new_photos == 2  # A3 and A4 now
    assert {r.record_id for r in spark.read.format("delta").load(cfg.table_path("photos")).collect()} == {
        "A1", "A8", "A3", "A4"}


def test_folder_input_with_a_symlink_out_of_the_folder(spark: SparkSession, cfg: Config, tmp_path: Path) -> None:
    folder, outside = tmp_path / "incoming", tmp_path / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    shutil.copy(LFW_DIR / GOOD[0], folder / "R1.jpg")
    shutil.copy(LFW_DIR / GOOD[1], outside / "secret.jpg")
    (folder / "R2.jpg").symlink_to(outside / "secret.jpg")
    res = ingest.run(spark, cfg, str(folder))
    assert (res.input_rows, res.new_photos, res.rejects) == (2, 1, 1)
    rejects = [(r.record_id, r.reason) for r in spark.read.format("delta").load(cfg.table_path("rejects")).collect()]
    assert rejects == [("R2", "symlink_escape")]
