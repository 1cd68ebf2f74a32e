"""Shipping to ``spark-submit``: ``scripts/dist.sh zip`` and a job submitted as docs/running.md says.

The packed executor virtualenv (``scripts/dist.sh env``, minutes and ~350 MB) is not built here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from tests.paths import LFW_DIR, REPO_ROOT

PACKAGES = ("facelink", "jobs", "udfs", "schemas")
PHOTOS = ("AJ_Cook/AJ_Cook_0001.jpg", "Aaron_Patterson/Aaron_Patterson_0001.jpg")


@pytest.fixture(scope="module")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "DIST": str(out)}
    subprocess.run(["bash", "scripts/dist.sh", "zip"], cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    return out


def test_zip_holds_every_module_of_the_packages(dist_dir: Path) -> None:
    with zipfile.ZipFile(dist_dir / "facelink.zip") as zf:
        names = set(zf.namelist())
    expected = {
        p.relative_to(REPO_ROOT).as_posix()
        for pkg in PACKAGES for p in (REPO_ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts
    }
    assert {f"{pkg}/__init__.py" for pkg in PACKAGES} <= names
    assert expected <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert {n.split("/")[0] for n in names} == set(PACKAGES)


def test_zip_is_importable_alone(dist_dir: Path, tmp_path: Path) -> None:
    # -S: no site-packages, so nothing but the zip can provide facelink (nightly needs the stdlib only).
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(dist_dir / 'facelink.zip')!r})\n"
        "import facelink.nightly as n\n"
        "print(n.__file__, len(n.STEPS))\n"
    )
    out = subprocess.run([sys.executable, "-S", str(probe)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(str(dist_dir / "facelink.zip") + os.sep + "facelink")


def test_conf_archive_holds_the_configuration_at_its_top_level(dist_dir: Path) -> None:
    with tarfile.open(dist_dir / "conf.tar.gz") as tf:
        names = {Path(n).name for n in tf.getnames() if n.endswith(".yaml")}
    assert names == {p.name for p in (REPO_ROOT / "conf").glob("*.yaml")}
    assert "base.yaml" in names


def test_spark_submit_runs_a_job_script_with_the_zip(dist_dir: Path, tmp_path: Path, spark: SparkSession) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for rel in PHOTOS:
        shutil.copy(LFW_DIR / rel, photos / Path(rel).name)
    lake = tmp_path / "lake"
    venv_bin = REPO_ROOT / ".venv" / "bin"
    cmd = [
        str(venv_bin / "spark-submit"), "--master", "local[1]", "--driver-memory", "1g",
        "--py-files", str(dist_dir / "facelink.zip"),
        "--jars", f"{REPO_ROOT}/.jars/delta-spark_4.2_2.13-*.jar,{REPO_ROOT}/.jars/delta-storage-*.jar",
        "--conf", f"spark.pyspark.python={venv_bin / 'python'}", "--conf", "spark.log.level=WARN",
        str(REPO_ROOT / "jobs" / "ingest.py"),
        "--env", "test", "--conf-dir", str(dist_dir / "conf"), "--set=spark.master=",
        f"--set=lake.root={lake}", f"--set=paths.jars_dir={REPO_ROOT / '.jars'}",
        "--input", str(photos), "--role", "gallery", "--run-id", "dist-test",
    ]
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    assert "ingest dist-test: 2 rows = 2 new" in out.stdout
    rows = spark.read.format("delta").load(str(lake / "tables" / "photos")).select(
        "record_id", "role", "ingest_run_id", "format").collect()
    assert sorted(tuple(r) for r in rows) == [
        ("AJ_Cook_0001", "gallery", "dist-test", "JPEG"), ("Aaron_Patterson_0001", "gallery", "dist-test", "JPEG"),
    ]


@pytest.mark.parametrize("env", ["yarn", "k8s"])
def test_cluster_examples_load_and_leave_the_master_to_spark_submit(env: str) -> None:
    from facelink.config import load_config

    cfg = load_config(env)
    assert cfg.spark.master == ""
    assert "://" in cfg.lake.root
    assert all(key.startswith("spark.") and isinstance(v, str) for key, v in cfg.spark.extra.items())
    assert all(Path(p).is_absolute() for p in (cfg.paths.models_dir, cfg.paths.jars_dir))
