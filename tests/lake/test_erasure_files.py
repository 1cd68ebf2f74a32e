"""The pieces of complete erasure that need no Spark: statistics-free identifying columns in every table spec,
keyed pseudonyms, and the sweep of derived files (reports, Data Docs, caches) on a real folder tree."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from facelink.lake.erasure import Traces, holds, sweep
from facelink.lake.fs import LakeFs
from facelink.lake.runs import pseudonym
from schemas import all_specs, get_spec
from tests.s3_server import S3Server

PHOTO = "ab" * 32


def test_no_table_keeps_statistics_of_an_identifying_column() -> None:
    photos = get_spec("photos").table_properties()
    stats = photos["delta.dataSkippingStatsColumns"].split(",")
    assert not {"record_id", "photo_id", "source_path"} & set(stats) and "ingest_run_id" in stats
    for spec in all_specs():
        props = spec.table_properties()
        kept = set(props.get("delta.dataSkippingStatsColumns", "").split(","))
        assert not kept & set(spec.identifying), spec.name
    for name in ("photos", "faces", "rejects", "matches", "probe_status", "duplicate_candidates",
                 "duplicate_clusters", "reviews", "dq_results", "runs", "audit"):
        assert get_spec(name).identifying, f"{name} names people but marks no column identifying"
    assert get_spec("audit").table_properties()["delta.appendOnly"] == "true"


def test_pseudonyms_are_keyed_and_stable() -> None:
    assert pseudonym("k1", "R1") == pseudonym("k1", "R1") != pseudonym("k2", "R1")
    assert pseudonym("k1", "R1").startswith("ps:") and "R1" not in pseudonym("k1", "R1")
    assert pseudonym("", "R1") == pseudonym("", "R1"), "the per-process key is stable within a process"


def test_sweep_removes_report_folders_and_files_that_quote_the_records(tmp_path: Path) -> None:
    vector = np.arange(8, dtype=np.float32)
    traces = Traces.of(["REC-1"], [PHOTO], ["file:/in/2024/Jane_Doe_0001.jpg"], [vector.tobytes()])
    files = {
        "reports/run-a/index.html": b"<td>REC-1</td>",
        "reports/run-a/thumbs/x.jpg": b"jpeg",
        "reports/run-b/index.html": b"<td>REC-10</td>",  # another record: a whole token only
        "reports/run-c/thumbs/" + PHOTO[:32] + ".jpg": b"jpeg",  # the name is a photo id prefix
        "reports/nightly-1.json": b'{"file": "Jane_Doe_0001.jpg"}',
        "gx/validations/v.json.gz": gzip.compress(PHOTO[:12].encode()),
        "dq_docs/index.html": b"nothing here",
        "calibration/m/other.bin": b"\x00" * 64,
    }
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    (tmp_path / "evaluation").mkdir()
    np.savez_compressed(tmp_path / "evaluation" / "cache.npz", x=np.stack([vector, vector + 1]))
    assert holds(tmp_path / "evaluation" / "cache.npz", traces)
    removed = sweep(str(tmp_path), traces)
    assert sorted(removed) == ["evaluation/cache.npz", "gx/validations/v.json.gz", "reports/nightly-1.json",
                               "reports/run-a", "reports/run-c"]
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["calibration/m/other.bin", "dq_docs/index.html", "reports/run-b/index.html"]


@pytest.mark.objectstore
def test_sweep_works_the_same_on_an_object_store(tmp_path: Path, s3_server: S3Server) -> None:
    vector = np.arange(8, dtype=np.float32)
    traces = Traces.of(["REC-1"], [PHOTO], [], [vector.tobytes()])
    lake = LakeFs(s3_server.s3_conf)
    root = s3_server.uri("sweep-test")
    cache = tmp_path / "cache.npz"
    np.savez_compressed(cache, x=np.stack([vector, vector + 1]))
    files = {"reports/run-a/index.html": b"<td>REC-1</td>", "reports/run-a/thumbs/x.jpg": b"jpeg",
             "reports/run-b/index.html": b"<td>REC-10</td>", "reports/evaluation/e1/summary.md": PHOTO.encode(),
             "calibration/m/embeddings-1.npz": cache.read_bytes(), "dq_docs/index.html": b"nothing here"}
    for rel, data in files.items():
        lake.write_bytes(f"{root}/{rel}", data)
    removed = sweep(root, traces, lake)
    assert sorted(removed) == ["calibration/m/embeddings-1.npz", "reports/evaluation/e1", "reports/run-a"]
    assert lake.list_files(root) == [f"{root}/dq_docs/index.html", f"{root}/reports/run-b/index.html"]
    lake.delete(root)
