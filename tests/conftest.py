"""Suite-wide fixtures: one real local SparkSession with Delta Lake for the whole run."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from facelink.config import Config, load_config
from facelink.sample import SampleSizes, build_sample
from facelink.session import build_session
from tests.paths import LFW_DIR
from tests.s3_server import S3Server, running_s3_server


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    cfg = load_config("test", [f"lake.root={tmp_path_factory.mktemp('lake0')}"])
    session = build_session(cfg)
    yield session
    session.stop()


@pytest.fixture()
def cfg(tmp_path: Path) -> Config:
    """Test configuration with its own empty lake under a temporary folder."""
    return load_config("test", [f"lake.root={tmp_path / 'lake'}"])


@dataclass(frozen=True)
class PipelineLake:
    """A small archive taken through every stage once, shared by the tests that read its tables."""

    cfg: Config
    sample: Path
    truth: dict[str, dict[str, str]]
    results: dict[str, object]


TEST_SAMPLE = SampleSizes(duplicates=8, mated_probes=8, renewals=4, unmated_probes=8, singles=40)
ACCOUNTABLE = ["audit.operator=test-operator", "audit.purpose=duplicate_enrolment_check", "audit.authority=TEST-1"]


@pytest.fixture(scope="session")
def pipeline_lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> PipelineLake:
    from jobs import build_index, calibrate, dedup, extract, ingest, match

    root = tmp_path_factory.mktemp("pipeline")
    cfg = load_config("test", [f"lake.root={root / 'lake'}", *ACCOUNTABLE])
    sample = root / "sample"
    build_sample(LFW_DIR, sample, TEST_SAMPLE, seed=11)
    results: dict[str, object] = {
        "ingest_gallery": ingest.run(spark, cfg, str(sample / "gallery.csv"), "gallery", "t-ingest-g"),
        "ingest_probes": ingest.run(spark, cfg, str(sample / "probes.csv"), "probe", "t-ingest-p"),
        "extract": extract.run(spark, cfg, run_id="t-extract"),
        # 2,000 photos (about 400 per held-out fold): with 1,200, one fold of the default extraction saw 0.37x
        # the target FMR at 1e-3 from sampling alone (the full lfw_dev gives 0.84x-1.16x in every fold).
        "calibrate": calibrate.run(spark, cfg, limit=2000, run_id="t-calibrate"),
        "build_index": build_index.run(spark, cfg, run_id="t-index"),
    }
    results["dedup"] = dedup.run(spark, cfg, run_id="t-dedup")
    results["match"] = match.run(spark, cfg.with_overrides(["audit.purpose=application_screening"]), run_id="t-match")
    with (sample / "truth.csv").open() as fh:
        truth = {r["record_id"]: r for r in csv.DictReader(fh)}
    return PipelineLake(cfg, sample, truth, results)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3-compatible server on 127.0.0.1 (tests/s3_server.py) for the whole run, stopped at its end."""
    with running_s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server
