"""Erasure and probe retention on real Delta tables and a real FAISS index, down to the files on disk.

One small lake for the module: 5 gallery photos of 4 records in two partitions (``T1`` has two photos of one
person and shares partition ``north`` with ``K1``) and 2 probe photos, extracted and indexed; the match, dedup
and review tables get a few hand-made rows naming ``T1``, ``K1``... ``T1`` is erased with a 0-hour VACUUM, then
every table at its latest version, every parquet file (old versions' and Delta checkpoints included), every
other file under the lake (Delta logs, FAISS indexes, id arrays) and the index in force are searched for its
photo ids, photo bytes and embeddings. The same search finds all of them before the erasure.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink.config import Config, load_config
from facelink.hygiene import find_leaks
from facelink.index.gallery import current_index, searchable_faces
from facelink.index.search import load_searcher
from facelink.lake.erasure import contents
from facelink.lake.tables import append, read_table, table_exists
from facelink.registry import recogniser_id
from jobs import build_index, erase, extract, ingest, retention, review
from schemas import get_spec
from tests.paths import LFW_DIR

#: The erased records: ids that no other text contains, so that a search of every byte can find them.
T1, T2 = "ERASE-T1-Q7", "ERASE-T2-Q8"
GALLERY = [
    (T1, "Colin_Powell/Colin_Powell_0001.jpg", "north"),
    (T1, "Colin_Powell/Colin_Powell_0002.jpg", "north"),
    (T2, "Colin_Powell/Colin_Powell_0003.jpg", "north"),
    ("K1", "Tony_Blair/Tony_Blair_0001.jpg", "north"),
    ("K2", "Hugo_Chavez/Hugo_Chavez_0001.jpg", "south"),
    ("K3", "Laura_Bush/Laura_Bush_0001.jpg", "south"),
]
PROBES = [("P1", "Jacques_Chirac/Jacques_Chirac_0001.jpg", "intake"), ("P2", "Tom_Ridge/Tom_Ridge_0001.jpg", "intake")]
ACCOUNTABLE = [
    "audit.operator=test-operator", "audit.purpose=erasure_request", "audit.authority=ERASURE-REQ-1",
    # Only these two: the erase and retention jobs must work with nothing else allowed.
    "audit.allowed_purposes=[erasure_request, retention]",
]
COSINE_SAME = 0.9999
#: Hex digits of a photo id searched for: report pages print 12, thumbnails and Delta statistics keep 32.
PREFIX = 12


@dataclass(frozen=True)
class Needles:
    """What must not remain of a record: its id, photo ids, photo bytes and embeddings ``[n, d]``."""

    record_id: str
    photo_ids: tuple[str, ...]
    payloads: tuple[bytes, ...]
    vectors: np.ndarray
    file_names: tuple[str, ...] = ()


@dataclass
class EraseLake:
    cfg: Config
    root: Path
    target: Needles
    face_ids: set[int]
    traces_before: list[str]
    audit_before: set[str]
    index_before: tuple[str | None, list[dict[str, Any]]]
    result: erase.EraseResult
    probes: dict[str, Needles] = field(default_factory=dict)
    second: Needles | None = None
    planted: dict[str, bool] = field(default_factory=dict)


def _manifest(folder: Path, name: str, rows: list[tuple[str, str, str]]) -> Path:
    path = folder / name
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["record_id", "path", "region"])
        writer.writerows([(rid, str(LFW_DIR / rel), region) for rid, rel, region in rows])
    return path


def _needles(spark: SparkSession, cfg: Config, record_id: str, rels: list[str]) -> Needles:
    photos = read_table(spark, cfg, "photos").filter(F.col("record_id") == record_id).select("photo_id").collect()
    faces = read_table(spark, cfg, "faces").filter((F.col("record_id") == record_id) & F.col("embedding").isNotNull())
    vectors = np.array([r["embedding"] for r in faces.select("embedding").collect()], np.float32)
    assert len(photos) == len(rels) and len(vectors) >= len(rels), f"{record_id} was not ingested and extracted"
    return Needles(record_id, tuple(sorted(r["photo_id"] for r in photos)),
                   tuple((LFW_DIR / rel).read_bytes() for rel in rels), vectors, tuple(Path(r).name for r in rels))


def _add_review_rows(spark: SparkSession, cfg: Config, pid: dict[str, str]) -> None:
    """Hand-made matches, probe status, duplicate pairs, clusters and reviews naming T1, K1, K2, K3, P1, P2."""
    now = dt.datetime.now(dt.UTC)
    mid = "mobilefacenet_128d@x"

    def match(run: str, probe: str, cand: str, rank: int) -> tuple[Any, ...]:
        return (run, probe, pid[probe], 0, cand, pid[cand], 0, rank, 0.5, 1e-3, "strong", True, True, 0.9, 0.9, mid,
                "v", 4, 0.4)

    rows = {
        "matches": [match("m1", "P1", T1, 1), match("m1", "P1", "K1", 2), match("m1", "P2", "K2", 1),
                    match("m2", T1, "K3", 1)],
        "probe_status": [("m1", "P1", pid["P1"], "searched", None, 2, 0.5, "strong"),
                         ("m1", "P2", pid["P2"], "searched", None, 1, 0.5, "strong"),
                         ("m2", T1, pid[T1], "searched", None, 1, 0.5, "strong")],
        "duplicate_candidates": [("d1", "pair-a", "K1", pid["K1"], T1, pid[T1], 0.6, 1e-4, 1e-3, "strong", True,
                                  True, 0.9, 0.9, mid, "v"),
                                 ("d1", "pair-b", "K2", pid["K2"], "K3", pid["K3"], 0.6, 1e-4, 1e-3, "strong", True,
                                  True, 0.9, 0.9, mid, "v")],
        "duplicate_clusters": [("d1", "K1", 2, "K1", T1, 0.6, "strong"), ("d1", "K1", 2, T1, "K1", 0.6, "strong"),
                               ("d1", "K2", 2, "K2", "K3", 0.6, "strong"), ("d1", "K2", 2, "K3", "K2", 0.6, "strong")],
        "reviews": [("r1", "pair", "pair-a", "d1", ["K1", T1], "alice", "same_person", None, now),
                    ("r2", "pair", "pair-b", "d1", ["K2", "K3"], "alice", "different_people", None, now)],
    }
    for table, values in rows.items():
        spec = get_spec(table)
        append(spark, cfg, spec, spark.createDataFrame(values, spec.schema))


def _slice(payload: bytes) -> bytes:
    """64 bytes from the middle of a photo: its own entropy-coded data. (The JPEG headers, quantisation and
    Huffman tables near the start are the same in every LFW photo, so a slice there matches other photos.)"""
    mid = len(payload) // 2
    return payload[mid : mid + 64]


def _walk(value: Any, needles: Needles, where: str, found: set[str]) -> None:
    """Add to ``found`` each kind of trace of ``needles`` inside a (nested) value read from a table."""
    if isinstance(value, dict):
        for item in value.values():
            _walk(item, needles, where, found)
    elif isinstance(value, list | tuple):
        dim = needles.vectors.shape[1]
        if len(value) == dim and all(isinstance(x, float) for x in value):
            v = np.asarray(value, np.float32)
            if np.max(needles.vectors @ v) / max(float(np.linalg.norm(v)), 1e-12) > COSINE_SAME:
                found.add(f"{where}: embedding")
            return
        for item in value:
            _walk(item, needles, where, found)
    elif isinstance(value, str):
        if needles.record_id in value:
            found.add(f"{where}: record id")
        if any(p[:PREFIX] in value for p in needles.photo_ids):
            found.add(f"{where}: photo id")
        if any(n in value for n in needles.file_names):
            found.add(f"{where}: file name")
    elif isinstance(value, bytes | bytearray) and any(bytes(value) == p or _slice(p) in value
                                                      for p in needles.payloads):
        found.add(f"{where}: photo bytes")


def _plant_derived_files(lake: Path, t1: Needles, t2: Needles) -> dict[str, bool]:
    """Files as the report, quality, evaluation and calibration jobs write them, some quoting T1 or T2; returns
    each file's path under the lake and whether it must survive the erasure."""
    def write(rel: str, data: bytes) -> None:
        path = lake / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    pid1 = t1.photo_ids[0]
    write("reports/report-t1/index.html", f"<td>{t1.record_id}</td><code>{pid1[:12]}…</code>".encode())
    write(f"reports/report-t1/thumbs/{pid1[:32]}.jpg", b"\xff\xd8 a thumbnail")
    write("reports/report-k1/index.html", b"<td>K1</td>")
    write("reports/nightly-2026-11-22.json", json.dumps({"rejected": [t2.file_names[0]]}).encode())
    write("dq_docs/validations/photos.html", f"<li>{t2.record_id!r}</li>".encode())
    write("gx/validations/photos.json.gz", gzip.compress(json.dumps({"ids": [t2.photo_ids[0]]}).encode()))
    cache = lake / "evaluation" / "embeddings" / "cache.npz"
    cache.parent.mkdir(parents=True)
    np.savez_compressed(cache, embeddings=t1.vectors)
    other = lake / "calibration" / "m" / "embeddings-0.npz"
    other.parent.mkdir(parents=True)
    np.savez_compressed(other, embeddings=np.random.default_rng(0).standard_normal((4, 128)).astype(np.float32))
    return {"reports/report-t1": False, "reports/report-k1/index.html": True, "reports/nightly-2026-11-22.json": False,
            "dq_docs/validations/photos.html": False, "gx/validations/photos.json.gz": False,
            "evaluation/embeddings/cache.npz": False, "calibration/m/embeddings-0.npz": True}


def index_vectors(index: faiss.Index) -> np.ndarray:
    """Every vector stored in ``index`` ``[ntotal, d]`` (flat, IVF with a direct map, or refined)."""
    concrete = faiss.downcast_index(index)  # a view: ``index`` must stay referenced while it is used
    if isinstance(concrete, faiss.IndexRefine):
        return index_vectors(concrete.refine_index)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.make_direct_map()
    return index.reconstruct_n(0, index.ntotal)


def lake_traces(root: Path, needles: Needles) -> list[str]:
    """Each file under ``root`` holding a trace of ``needles``, with the kind of trace.

    Parquet files (data files and Delta checkpoints) are decoded and every value walked; FAISS files are read
    and their vectors reconstructed; every file's bytes, as stored and decompressed (gzip, zip members), are
    searched too: the record id, the photo ids' first 12 hex digits, the file names the photos came from, a
    slice of each photo and each embedding's float32 bytes.
    """
    found: set[str] = set()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        where = str(path.relative_to(root))
        if path.suffix == ".parquet":
            for row in pq.ParquetFile(path).read().to_pylist():
                _walk(row, needles, where, found)
        elif path.suffix == ".faiss":
            stored = index_vectors(faiss.read_index(str(path)))
            if len(stored) and np.max(stored @ needles.vectors.T) > COSINE_SAME:
                found.add(f"{where}: embedding in index")
        for data in contents(path):  # as stored, gunzipped, and each zip (.npz) member
            # (a short id such as the probes' "P1" occurs by chance in any binary file: searched decoded only)
            if len(needles.record_id) >= 8 and needles.record_id.encode() in data:
                found.add(f"{where}: record id (raw)")
            if any(p[:PREFIX].encode() in data for p in needles.photo_ids):
                found.add(f"{where}: photo id (raw)")
            if any(n.encode() in data for n in needles.file_names):
                found.add(f"{where}: file name (raw)")
            if any(_slice(p) in data for p in needles.payloads):
                found.add(f"{where}: photo bytes (raw)")
            if any(v.tobytes() in data for v in needles.vectors):
                found.add(f"{where}: embedding (raw float32)")
    return sorted(found)


def table_traces(spark: SparkSession, cfg: Config, needles: Needles) -> list[str]:
    """Traces of ``needles`` in every table of the lake read at its latest version."""
    found: set[str] = set()
    for table in ("photos", "rejects", "faces", "matches", "probe_status", "duplicate_candidates",
                  "duplicate_clusters", "reviews", "dq_results", "index_manifest", "runs", "audit"):
        if table_exists(spark, cfg, table):
            for row in read_table(spark, cfg, table).collect():
                _walk(row.asDict(recursive=True), needles, table, found)
    return sorted(found)


@pytest.fixture(scope="module")
def erase_lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EraseLake]:
    root = tmp_path_factory.mktemp("erase")
    cfg = load_config("test", [f"lake.root={root / 'lake'}", "ingest.partition_column=region",
                               "retention.vacuum_hours=0", *ACCOUNTABLE])
    ingest.run(spark, cfg, str(_manifest(root, "gallery.csv", GALLERY)), "gallery", "t-ingest-g")
    ingest.run(spark, cfg, str(_manifest(root, "probes.csv", PROBES)), "probe", "t-ingest-p")
    extract.run(spark, cfg, run_id="t-extract")
    build_index.run(spark, cfg, run_id="t-index")
    model_id = recogniser_id(cfg)
    target = _needles(spark, cfg, T1, [rel for rid, rel, _ in GALLERY if rid == T1])
    probes = {rid: _needles(spark, cfg, rid, [rel]) for rid, rel, _ in PROBES}
    pid = {r["record_id"]: r["photo_id"] for r in read_table(spark, cfg, "photos").collect()}
    _add_review_rows(spark, cfg, pid)
    # A real review of a match that names T1 by its photo id: audit keeps the event with a pseudonym.
    review.record_review(spark, cfg, "alice", "match", f"m2/{pid[T1]}/1", "same_person", run_id="t-review")
    second = _needles(spark, cfg, T2, [rel for rid, rel, _ in GALLERY if rid == T2])
    planted = _plant_derived_files(root / "lake", target, second)
    faces = searchable_faces(read_table(spark, cfg, "faces"), model_id, cfg.index.gallery_quality)
    face_ids = {int(r["face_id"]) for r in faces
                .filter(F.col("record_id") == T1).select("face_id").collect()}
    assert len(face_ids) == 2, "both T1 photos should be searchable gallery faces"
    lake = root / "lake"
    traces_before = lake_traces(lake, target)
    audit_before = {r["audit_id"] for r in read_table(spark, cfg, "audit").select("audit_id").collect()}
    index_before = current_index(spark, cfg, model_id)
    result = erase.run(spark, cfg, [T1, T2], run_id="t-erase")
    yield EraseLake(cfg, lake, target, face_ids, traces_before, audit_before, index_before, result, probes, second,
                    planted)


def test_the_search_finds_every_trace_before_erasure(erase_lake: EraseLake) -> None:
    kinds = {t.split(": ", 1)[1] for t in erase_lake.traces_before}
    assert {"record id", "photo id", "photo bytes", "embedding", "embedding in index", "file name"} <= kinds, kinds
    files = {t.split(": ", 1)[0] for t in erase_lake.traces_before}
    for table in ("photos", "faces", "matches", "probe_status", "duplicate_candidates", "duplicate_clusters",
                  "reviews"):
        assert any(f.startswith(f"tables/{table}/") for f in files), f"no trace of T1 in {table} before erasure"


def test_no_table_version_or_file_holds_the_erased_record(spark: SparkSession, erase_lake: EraseLake) -> None:
    res = erase_lake.result
    assert res.records == 2 and res.records_found == 2
    assert res.rows_deleted["photos"] == 3 and res.rows_deleted["faces"] >= 3
    assert res.rows_deleted["matches"] == 2 and res.rows_deleted["probe_status"] == 1
    assert res.rows_deleted["duplicate_candidates"] == 1 and res.rows_deleted["reviews"] == 2
    assert res.rows_deleted["duplicate_clusters"] == 2, "the whole cluster that held T1 goes"
    assert erase_lake.second is not None
    for needles in (erase_lake.target, erase_lake.second):
        assert table_traces(spark, erase_lake.cfg, needles) == []
        assert lake_traces(erase_lake.root, needles) == []
    # The rows of the other records are all still there.
    cfg = erase_lake.cfg
    assert sorted(r[0] for r in read_table(spark, cfg, "photos").select("record_id").collect()) == [
        "K1", "K2", "K3", "P1", "P2"]
    assert read_table(spark, cfg, "matches").count() == 2 and read_table(spark, cfg, "reviews").count() == 1
    # The derived files that quoted T1 or T2 are gone; those about other records are not.
    assert {name: (erase_lake.root / name).exists() for name in erase_lake.planted} == erase_lake.planted
    assert {r["cluster_id"] for r in read_table(spark, cfg, "duplicate_clusters").collect()} == {"K2"}


def test_erasure_commits_keep_the_ids_out_of_the_delta_log(erase_lake: EraseLake) -> None:
    for log_file in (erase_lake.root / "tables").glob("*/_delta_log/*.json"):
        for line in log_file.read_text().splitlines():
            info = json.loads(line).get("commitInfo")
            if info and info.get("operation") in ("MERGE", "DELETE", "UPDATE"):
                assert T1 not in json.dumps(info.get("operationParameters")), log_file


def test_index_in_force_no_longer_returns_the_record(spark: SparkSession, erase_lake: EraseLake) -> None:
    cfg = erase_lake.cfg
    model_id = recogniser_id(cfg)
    version, rows = current_index(spark, cfg, model_id)
    before_version, before_rows = erase_lake.index_before
    assert version != before_version and erase_lake.result.index_versions == {model_id: version}
    modes = {r["partition"]: r["mode"] for r in rows}
    assert modes == {"north": "full", "south": "unchanged"}, modes
    # The unchanged partition still uses the first version's files: the purge kept them.
    south_before = next(r for r in before_rows if r["partition"] == "south")
    assert next(r for r in rows if r["partition"] == "south")["index_path"] == south_before["index_path"]
    searcher = load_searcher(rows)
    scores, ids, _ = searcher.search(erase_lake.target.vectors, 3)
    assert not set(ids.ravel().tolist()) & erase_lake.face_ids
    assert float(scores.max()) < COSINE_SAME
    k1 = read_table(spark, cfg, "faces").filter((F.col("record_id") == "K1") & F.col("is_primary")).first()
    assert k1 is not None
    k1_scores, _, _ = searcher.search(np.array([k1["embedding"]], np.float32), 1)
    assert k1_scores[0, 0] > COSINE_SAME, "the rest of the gallery is still searchable"
    assert erase_lake.result.index_files_removed >= 2
    left = {p.resolve() for p in (erase_lake.root / "indexes").rglob("*") if p.is_file()}
    assert left == {Path(r[k]).resolve() for r in rows for k in ("index_path", "ids_path")}


def test_erasure_is_audited_and_the_audit_is_untouched(spark: SparkSession, erase_lake: EraseLake) -> None:
    audit = read_table(spark, erase_lake.cfg, "audit")
    rows = audit.collect()
    assert erase_lake.audit_before <= {r["audit_id"] for r in rows}, "erasure removed audit rows"
    row = next(r for r in rows if r["run_id"] == "t-erase" and r["job"] == "erase")
    assert row["outcome"] == "succeeded" and row["operator"] == "test-operator"
    assert row["purpose"] == "erasure_request" and row["authority"] == "ERASURE-REQ-1"
    assert row["counts"]["records"] == 2 and row["counts"]["photos_rows"] == 3
    assert row["counts"]["derived_files_removed"] == 5
    detail = json.loads(row["detail"])
    assert detail["records"] == 2 and detail["vacuum_hours"] == 0
    # The review's audit row keeps the event; its subject (a match naming T1's photo) is a pseudonym.
    reviewed = next(r for r in rows if r["run_id"] == "t-review")
    subject = json.loads(reviewed["detail"])["subject_id"]
    assert subject.startswith("ps:") and not any(p[:PREFIX] in reviewed["detail"] for p in erase_lake.target.photo_ids)
    # Audit rows hold no photo bytes, embeddings or photo ids, and the erase row does not name the record.
    text = "\n".join(str(r.asDict(recursive=True)) for r in rows)
    assert find_leaks(text, payloads=erase_lake.target.payloads) == []
    assert not any(p in text for p in erase_lake.target.photo_ids)
    assert T1 not in row["detail"] and T1 not in str(row["counts"])
    assert DeltaTable.forPath(spark, erase_lake.cfg.table_path("audit")).history().filter(
        ~F.col("operation").isin("WRITE", "CREATE TABLE")).count() == 0, "audit saw something other than appends"


def test_second_erasure_is_harmless(spark: SparkSession, erase_lake: EraseLake, tmp_path: Path) -> None:
    cfg = erase_lake.cfg
    versions = {t: DeltaTable.forPath(spark, cfg.table_path(t)).history(1).first()["version"]  # type: ignore[index]
                for t in ("photos", "faces", "matches", "reviews", "index_manifest")}
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"# erasure request ERASURE-REQ-1\n{T1}\n{T2}\n\n")
    argv = ["--env", "test", "--run-id", "t-erase-again", "--from-file", str(ids_file),
            *(x for s in (f"lake.root={erase_lake.root}", "ingest.partition_column=region",
                          "retention.vacuum_hours=0", *ACCOUNTABLE) for x in ("--set", s))]
    assert erase.main(argv, spark=spark) == 0
    for table, version in versions.items():
        ops = DeltaTable.forPath(spark, cfg.table_path(table)).history().filter(F.col("version") > version)
        assert {r["operation"] for r in ops.collect()} <= {"VACUUM START", "VACUUM END"}, table
    assert current_index(spark, cfg, recogniser_id(cfg))[0] == erase_lake.result.index_versions[recogniser_id(cfg)]
    row = read_table(spark, cfg, "audit").filter(F.col("run_id") == "t-erase-again").first()
    assert row is not None and row["outcome"] == "succeeded"
    assert row["counts"]["records_found"] == 0 and row["counts"]["photos_rows"] == 0
    assert read_table(spark, cfg, "photos").count() == 5


def test_erasure_without_an_allowed_purpose_is_refused(spark: SparkSession, erase_lake: EraseLake,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--env", "test", "--run-id", "t-erase-refused", "--record-id", "K1",
            "--set", f"lake.root={erase_lake.root}", *(x for s in ACCOUNTABLE for x in ("--set", s)),
            "--set", "audit.purpose=quality_assurance", "--set", "audit.allowed_purposes=[quality_assurance]"]
    assert erase.main(argv, spark=spark) == 6
    assert "audit.purpose" in capsys.readouterr().err
    cfg = erase_lake.cfg
    row = read_table(spark, cfg, "audit").filter(F.col("run_id") == "t-erase-refused").first()
    assert row is not None and row["outcome"] == "refused" and row["job"] == "erase"
    assert read_table(spark, cfg, "photos").filter(F.col("record_id") == "K1").count() == 1


def test_expired_probes_leave_with_their_matches_and_status(spark: SparkSession, erase_lake: EraseLake) -> None:
    cfg = erase_lake.cfg.with_overrides(["audit.purpose=retention", "audit.authority=RETENTION-POLICY-3"])
    now = dt.datetime.now(dt.UTC)
    p1 = erase_lake.probes["P1"]
    # Aged by a MERGE against the key, as the jobs write: an UPDATE would put "P1" into the log's predicate.
    DeltaTable.forPath(spark, cfg.table_path("photos")).alias("t").merge(
        spark.createDataFrame([("P1",)], "record_id string").alias("s"), "t.record_id = s.record_id"
    ).whenMatchedUpdate(set={"ingested_at": F.lit(now - dt.timedelta(days=cfg.retention.probe_days + 1))}).execute()
    res = retention.run(spark, cfg, now=now, run_id="t-retention")
    assert res.expired_photos == 1
    assert res.rows_deleted["photos"] == 1 and res.rows_deleted["faces"] >= 1
    assert res.rows_deleted["matches"] == 1 and res.rows_deleted["probe_status"] == 1
    assert table_traces(spark, cfg, p1) == [] and lake_traces(erase_lake.root, p1) == []
    assert sorted(r[0] for r in read_table(spark, cfg, "photos").select("record_id").collect()) == [
        "K1", "K2", "K3", "P2"]
    assert read_table(spark, cfg, "matches").select("probe_record_id").collect()[0][0] == "P2"
    row = read_table(spark, cfg, "audit").filter(F.col("run_id") == "t-retention").first()
    assert row is not None and row["outcome"] == "succeeded" and row["purpose"] == "retention"
    assert row["counts"]["expired_photos"] == 1
