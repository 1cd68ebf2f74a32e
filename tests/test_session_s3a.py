"""The session on an s3a:// lake: its fs.s3a.* settings, and Spark with Delta on a real S3-compatible server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from facelink.config import LakeS3Conf, load_config
from facelink.lake.fs import LakeFs
from facelink.session import s3a_hadoop_settings, session_settings, uses_s3a
from tests.paths import REPO_ROOT
from tests.s3_server import S3Server


def test_s3a_settings_follow_the_lake_settings() -> None:
    static = LakeS3Conf(endpoint="127.0.0.1:9000", path_style_access=True, ssl=False, credentials="static",
                        access_key_id="AK", secret_access_key="SK", session_token="TOK")
    assert s3a_hadoop_settings(static) == {
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.access.key": "AK",
        "spark.hadoop.fs.s3a.secret.key": "SK",
        "spark.hadoop.fs.s3a.session.token": "TOK",
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider",
    }
    aws = s3a_hadoop_settings(LakeS3Conf(region="eu-west-1"))
    assert "spark.hadoop.fs.s3a.endpoint" not in aws
    assert aws["spark.hadoop.fs.s3a.aws.credentials.provider"] == (
        "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider")
    assert not any("key" in k or "token" in k for k in aws)


@pytest.mark.objectstore
def test_a_session_on_an_s3a_lake_writes_and_reads_delta_there(s3_server: S3Server, tmp_path: Path) -> None:
    prefix = "delta-smoke"
    work = tmp_path / "cwd"
    work.mkdir()
    env = {**os.environ, **s3_server.env(), "PYTHONPATH": str(REPO_ROOT)}
    args = [f"--set=lake.root={s3_server.uri(prefix)}", *(f"--set={o}" for o in s3_server.overrides())]
    proc = subprocess.run([sys.executable, "-m", "tests.objectstore_delta", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["rows"] == [[i, f"row {i}"] for i in (*range(8), 10)]
    assert seen["version"] == 2
    assert {"00000000000000000000.json", "00000000000000000001.json", "00000000000000000002.json"} <= set(
        seen["log_files"])
    assert seen["hadoop_aws_jar"] and seen["path_style"] == "true"
    assert seen["endpoint"] == f"http://{s3_server.endpoint}"
    # the table is in the server's own folder, and the job left nothing in its working directory
    table_dir = s3_server.data_dir / s3_server.bucket / prefix / "tables" / "smoke"
    assert any(p.suffix == ".parquet" for p in table_dir.iterdir())
    assert list(work.iterdir()) == []
    LakeFs(s3_server.s3_conf).delete(s3_server.uri(prefix))


@pytest.mark.objectstore
def test_s3a_settings_and_credentials_come_from_the_configuration(s3_server: S3Server) -> None:
    cfg = s3_server.config("anything")
    assert uses_s3a(cfg) and cfg.lake.s3 == s3_server.s3_conf
    settings = session_settings(cfg)
    assert settings["spark.hadoop.fs.s3a.endpoint"] == f"http://{s3_server.endpoint}"
    assert settings["spark.hadoop.fs.s3a.secret.key"] == s3_server.secret_access_key
    local = load_config("test", ["lake.root=/tmp/lake"])
    assert not uses_s3a(local)
    assert not any(k.startswith("spark.hadoop.fs.s3a.") for k in session_settings(local))
