"""Logs, run records and audit rows carry no photo bytes, no embeddings and no secret in clear.

The jobs run through ``main()`` (the command-line path, with its logging set-up) at DEBUG, with a secret given
the way an operator would (``--set spark.extra={...}``); the worker-side functions of ingest and extract are
also run in this process, since Spark's Python workers log to their own stderr, out of the test's reach.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink.config import MASK, Config, config_hash, load_config, masked_dict
from facelink.extraction.settings import ExtractSettings
from facelink.extraction.udf import make_extract_fn
from facelink.hygiene import find_leaks
from facelink.ingest.udf import make_validate_fn
from facelink.lake.tables import read_table
from jobs import extract, ingest
from tests.paths import LFW_DIR

PHOTOS = ["Colin_Powell/Colin_Powell_0001.jpg", "Tony_Blair/Tony_Blair_0001.jpg"]
SECRET, ACCESS_KEY = "SEKRIT-7f1c", "AKIAEXAMPLE0KEY"
SECRET_SET = ('spark.extra={"spark.hadoop.fs.s3a.secret.key": "' + SECRET + '", '
              '"spark.hadoop.fs.s3a.access.key": "' + ACCESS_KEY + '"}')


def test_the_leak_scanner_catches_what_it_must() -> None:
    photo = (LFW_DIR / PHOTOS[0]).read_bytes()
    vector = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    assert find_leaks(f"embedding {vector}") and find_leaks(f"embedding {vector.tolist()}")
    assert find_leaks(photo.hex()[:240]) and find_leaks(f"content={photo[:300]!r}", payloads=[photo])
    assert find_leaks(f"key={SECRET}", secrets=[SECRET]) == ["a secret in clear"]
    clean = f"photo {hashlib.sha256(photo).hexdigest()} box [1.0, 2.0, 3.0, 4.0] scores {vector[:8].tolist()}"
    assert find_leaks(clean, secrets=[SECRET], payloads=[photo]) == []


@pytest.mark.parametrize("key", [
    "spark.hadoop.fs.s3a.secret.key",
    "spark.hadoop.fs.s3a.access.key",
    "spark.hadoop.fs.s3a.session.token",
    "spark.hadoop.javax.jdo.option.ConnectionPassword",
    "spark.hadoop.fs.azure.account.oauth2.client.secret",
    "spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net",
    "spark.hadoop.fs.s3a.encryption.key",
])
def test_secret_values_are_masked_in_the_dump_and_the_hash(key: str) -> None:
    one = load_config("test", ['spark.extra={"' + key + '": "SEKRIT-1"}'])
    other = load_config("test", ['spark.extra={"' + key + '": "SEKRIT-2"}'])
    dumped = masked_dict(one)
    assert dumped["spark"]["extra"][key] == MASK
    assert "SEKRIT" not in json.dumps(dumped)
    assert config_hash(one) == config_hash(other), "a rotated secret must keep the configuration hash"


def test_worker_functions_log_no_bytes_or_embeddings(cfg: Config, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    payloads = [(LFW_DIR / p).read_bytes() for p in PHOTOS]
    corrupt = payloads[0][:600]
    contents = [*payloads, corrupt, b"\x00" * 64]
    validate = make_validate_fn(cfg.ingest.max_pixels)
    batches = iter([pd.DataFrame({"row_no": range(len(contents)), "content": contents})])
    validated: pd.DataFrame = pd.concat(validate(batches))  # type: ignore[operator]
    assert validated["reason"].notna().sum() == 2
    batch = pd.DataFrame({
        "record_id": [f"R{i}" for i in range(len(contents))],
        "photo_id": [hashlib.sha256(c).hexdigest() for c in contents],
        "role": "gallery", "partition": "b000", "content": contents,
    })
    rows = pd.concat(make_extract_fn(ExtractSettings.from_config(cfg))(iter([batch])))
    assert rows["embedding"].notna().sum() >= 2, "the photos were embedded (so there was something to leak)"
    assert find_leaks(caplog.text, payloads=contents) == []
    # Per-row error messages end in the faces and rejects tables: no bytes there either.
    messages = "\n".join(map(str, [*validated["detail"].dropna(), *rows["error"].dropna()]))
    assert messages and find_leaks(messages, payloads=contents) == []


def test_job_logs_and_records_hold_no_photo_bytes_embeddings_or_secrets(
    spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i, rel in enumerate(PHOTOS):
        shutil.copy(LFW_DIR / rel, folder / f"H{i}.jpg")
    payloads = [(LFW_DIR / p).read_bytes() for p in PHOTOS]
    overrides = [f"lake.root={tmp_path / 'lake'}", SECRET_SET]
    common = ["--env", "test", "--log-level", "DEBUG", *(x for s in overrides for x in ("--set", s))]
    caplog.set_level(logging.DEBUG)
    assert ingest.main([*common, "--run-id", "h-ingest", "--input", str(folder)], spark=spark) == 0
    assert extract.main([*common, "--run-id", "h-extract"], spark=spark) == 0

    config_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("configuration:")]
    assert config_lines and all(MASK in line for line in config_lines), "the DEBUG configuration dump is masked"
    printed = capsys.readouterr()
    for text in (caplog.text, printed.out, printed.err):
        assert find_leaks(text, secrets=[SECRET, ACCESS_KEY], payloads=payloads) == []

    cfg = load_config("test", overrides)
    faces = read_table(spark, cfg, "faces").filter(F.col("embedding").isNotNull()).count()
    assert faces >= 2, "the photos were embedded (so there was something to leak)"
    records = [
        r.asDict(recursive=True)
        for table in ("runs", "audit")
        for r in read_table(spark, cfg, table).filter(F.col("run_id").isin("h-ingest", "h-extract")).collect()
    ]
    assert len(records) == 4
    text = "\n".join(map(str, records))
    assert find_leaks(text, secrets=[SECRET, ACCESS_KEY], payloads=payloads) == []
    assert not any(hashlib.sha256(p).hexdigest() in text for p in payloads), "run records name no photo"
    rotated = load_config("test", [overrides[0], SECRET_SET.replace(SECRET, "ROTATED")])
    assert {r["config_hash"] for r in records} == {config_hash(cfg)} == {config_hash(rotated)}
