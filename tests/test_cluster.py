"""A real multi-node Spark run: a standalone master and two one-core workers on 127.0.0.1, the lake on an object store.

The pip ``pyspark`` package ships ``bin/spark-class`` but not ``sbin/start-master.sh`` or
``start-worker.sh``, so the daemons are launched as ``spark-class org.apache.spark.deploy.master.Master``
and ``...worker.Worker`` on free ports, in their own process groups, and always stopped at teardown. Ingest
(a gallery and a probe batch), extract, build_index and match go to the master with ``spark-submit`` exactly
as docs/running.md says (zip in ``--py-files``, Delta jars in ``--jars``); their ``photos``, ``faces`` and
``matches`` must equal those of the same jobs run in local mode. Each worker runs in its own working directory
(its ``--work-dir``), where its executors run too, and every daemon, web UI and executor listens on 127.0.0.1
only. The cluster's lake is on the S3-compatible server of tests/s3_server.py (``lake.root=s3a://...``): the
executors share nothing with the driver but the store, and load the index from it. Its Delta tables are then
copied to a local folder to be compared. Both lakes get one calibration, fitted once in local mode on a few
hundred lfw_dev photos. Run with ``make cluster-test`` (marker ``cluster``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyspark
import pytest
from pyspark.sql import SparkSession

from facelink.config import load_config
from facelink.lake.fs import LakeFs
from jobs import build_index, calibrate, extract, ingest, match
from tests.listeners import listening, off_loopback
from tests.paths import LFW_DIR, REPO_ROOT
from tests.s3_server import S3Server

pytestmark = pytest.mark.cluster

SPARK_HOME = Path(pyspark.__file__).resolve().parent
VENV_BIN = REPO_ROOT / ".venv" / "bin"
N_PHOTOS = 20
N_PROBES = 6  # the first gallery photos again, under new record ids: each must find its gallery twin
AUDIT = ["audit.operator=cluster-test", "audit.purpose=application_screening", "audit.authority=TEST-CLUSTER"]
WORKERS = 2
START_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Standalone:
    url: str
    ui: str
    logs: Path
    pids: list[int]
    work_dirs: list[Path]

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.ui}/json", timeout=10) as resp:
            return json.loads(resp.read())


def spark_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "512m",
        "SPARK_LOG_DIR": str(tmp / "logs"),
        "SPARK_PID_DIR": str(tmp),
        # spark-submit's find-spark-home and the driver pick `python3` from PATH: the project's.
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    })
    env.pop("PYTHONPATH", None)
    return env


def start_daemon(args: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), *args], env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)


def stop_daemons(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):  # workers first, then the master
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    tmp = tmp_path_factory.mktemp("standalone")
    env = spark_env(tmp)
    port, ui_port = free_port(), free_port()
    work_dirs = [tmp / f"worker{i}" for i in range(WORKERS)]
    cluster = Standalone(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}", tmp, [], work_dirs)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start_daemon(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port",
                                   str(port), "--webui-port", str(ui_port)], env, tmp / "master.log", tmp))
        for i, work_dir in enumerate(work_dirs):
            work_dir.mkdir()
            procs.append(start_daemon(
                ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--port", str(free_port()),
                 "--webui-port", str(free_port()), "--cores", "1", "--memory", "2g", "--work-dir", str(work_dir),
                 cluster.url], env, tmp / f"worker{i}.log", work_dir))
        cluster.pids[:] = [p.pid for p in procs]
        deadline = time.monotonic() + START_TIMEOUT_S
        alive = 0
        while time.monotonic() < deadline:
            dead = [p.args for p in procs if p.poll() is not None]
            assert not dead, f"a Spark daemon exited at start; logs in {tmp}"
            try:
                alive = sum(w["state"] == "ALIVE" for w in cluster.state()["workers"])
            except OSError:
                alive = 0
            if alive == WORKERS:
                break
            time.sleep(2)
        assert alive == WORKERS, f"{alive}/{WORKERS} workers registered in {START_TIMEOUT_S}s; logs in {tmp}"
        yield cluster
    finally:
        stop_daemons(procs)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``N_PHOTOS`` lfw_dev photos (the first of the manifest), with absolute paths."""
    path = tmp_path_factory.mktemp("photos") / "gallery.csv"
    with (LFW_DIR / "manifest.csv").open() as fh:
        rows = [row for _, row in zip(range(N_PHOTOS), csv.DictReader(fh), strict=False)]
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["record_id", "path"])
        out.writerows([f"C{i:03d}", str(LFW_DIR / row["path"])] for i, row in enumerate(rows))
    return path


@pytest.fixture(scope="module")
def probes(manifest: Path) -> Path:
    """The first ``N_PROBES`` gallery photos as a probe batch under new record ids."""
    with manifest.open() as fh:
        rows = [row for _, row in zip(range(N_PROBES), csv.DictReader(fh), strict=False)]
    path = manifest.parent / "probes.csv"
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["record_id", "path"])
        out.writerows([f"P{i:03d}", row["path"]] for i, row in enumerate(rows))
    return path


@pytest.fixture(scope="module")
def dist_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(["bash", "scripts/dist.sh", "zip"], check=True, cwd=REPO_ROOT, capture_output=True,
                   env={**os.environ, "DIST": str(out)})
    return out / "facelink.zip"


def submit(cluster: Standalone, zip_path: Path, job: str, args: list[str], log: Path,
           env: dict[str, str] | None = None) -> str:
    """``spark-submit`` one job to the standalone master from a scratch working folder; return its log.

    The s3a jars of ``make setup`` go on ``--jars`` beside Delta's (docs/running.md §8); ``env`` adds to the
    driver's environment (the object store's keys)."""
    jars = ",".join(str(REPO_ROOT / ".jars" / j)
                    for j in ("delta-spark_4.2_2.13-*.jar", "delta-storage-*.jar", "s3a/*.jar"))
    cmd = [
        str(VENV_BIN / "spark-submit"), "--master", cluster.url, "--deploy-mode", "client",
        "--name", f"facelink-cluster-test-{job}", "--driver-memory", "1g",
        "--total-executor-cores", str(WORKERS), "--executor-cores", "1", "--executor-memory", "1g",
        "--py-files", str(zip_path), "--jars", jars,
        "--conf", f"spark.pyspark.python={VENV_BIN / 'python'}", "--conf", "spark.log.level=WARN",
        str(REPO_ROOT / "jobs" / f"{job}.py"),
        "--env", "test", "--conf-dir", str(REPO_ROOT / "conf"), "--set=spark.master=", *args,
    ]
    with log.open("w") as fh:
        code = subprocess.run(cmd, cwd=log.parent, env={**spark_env(log.parent), **(env or {})}, stdout=fh,
                              stderr=subprocess.STDOUT).returncode
    text = log.read_text()
    assert code == 0, f"spark-submit {job} exited {code}:\n{text[-5000:]}"
    assert f"({cluster.url})" in text, f"{job} did not run on {cluster.url}:\n{text[-3000:]}"
    return text


def executor_commands(work_dir: Path) -> list[str]:
    """The launch command of every executor a worker ran: the first line of ``<app>/<executor>/stderr``."""
    commands = []
    for stderr in sorted(work_dir.glob("app-*/*/stderr")):
        with stderr.open() as fh:
            commands.append(fh.readline())
    return commands


def assert_on_loopback_in_own_folders(cluster: Standalone) -> None:
    """Every daemon listens on 127.0.0.1 only (master and its UI included); each worker ran its executors
    in its own working directory, on 127.0.0.1."""
    for pid in cluster.pids:
        ports = listening(pid)
        assert ports and off_loopback(ports) == set(), f"daemon {pid} listens on {sorted(ports)}"
    master_ports = {port for _, port in listening(cluster.pids[0])}
    assert {int(cluster.url.rsplit(":", 1)[1]), int(cluster.ui.rsplit(":", 1)[1])} <= master_ports
    for work_dir in cluster.work_dirs:
        commands = executor_commands(work_dir)
        assert commands, f"no executor ran in {work_dir}"
        for command in commands:
            assert '"--hostname" "127.0.0.1"' in command, command  # an executor binds to its --hostname


def faces_by_key(spark: SparkSession, lake: Path) -> dict[tuple, np.ndarray | None]:
    rows = (spark.read.format("delta").load(str(lake / "tables" / "faces"))
            .select("record_id", "photo_id", "model_id", "face_index", "status", "embedding").collect())
    return {(r.record_id, r.photo_id, r.model_id, r.face_index, r.status):
            None if r.embedding is None else np.asarray(r.embedding, dtype=np.float64) for r in rows}


def match_rows(spark: SparkSession, lake: Path) -> dict[tuple[str, int], tuple[str, str, float]]:
    rows = spark.read.format("delta").load(str(lake / "tables" / "matches")).collect()
    return {(r.probe_record_id, r.rank): (r.candidate_record_id, r.candidate_photo_id, r.score) for r in rows}


def photo_keys(spark: SparkSession, lake: Path) -> set[tuple[str, str]]:
    photos = spark.read.format("delta").load(str(lake / "tables" / "photos"))
    return {(r.record_id, r.photo_id) for r in photos.select("record_id", "photo_id").collect()}


def test_standalone_cluster_run_equals_local_mode(standalone: Standalone, dist_zip: Path, manifest: Path,
                                                  probes: Path, spark: SparkSession, s3_server: S3Server,
                                                  tmp_path: Path) -> None:
    store = LakeFs(s3_server.s3_conf)
    remote_root = s3_server.uri("cluster-lake")
    cluster_lake, local_lake = tmp_path / "cluster_lake", tmp_path / "local_lake"
    cal_lake = tmp_path / "calibration_lake"
    calibrate.run(spark, load_config("test", [f"lake.root={cal_lake}"]), limit=300, run_id="calibrate-l")
    shutil.copytree(cal_lake / "calibration", local_lake / "calibration")
    store.upload(cal_lake / "calibration", f"{remote_root}/calibration")

    start = time.perf_counter()
    work = tmp_path / "submit"
    work.mkdir()
    common = [f"--set=lake.root={remote_root}", *(f"--set={o}" for o in s3_server.overrides())]
    keys = s3_server.env()
    submit(standalone, dist_zip, "ingest",
           [*common, "--input", str(manifest), "--role", "gallery", "--run-id", "ingest-c"], work / "ingest.log",
           keys)
    submit(standalone, dist_zip, "ingest",
           [*common, "--input", str(probes), "--role", "probe", "--run-id", "ingest-p-c"], work / "ingest-p.log",
           keys)
    submit(standalone, dist_zip, "extract", [*common, "--run-id", "extract-c"], work / "extract.log", keys)
    submit(standalone, dist_zip, "build_index", [*common, "--run-id", "index-c"], work / "index.log", keys)
    submit(standalone, dist_zip, "match", [*common, *(f"--set={a}" for a in AUDIT), "--run-id", "match-c"],
           work / "match.log", keys)
    cluster_s = time.perf_counter() - start
    apps = standalone.state()["completedapps"]
    assert sorted(a["name"] for a in apps) == sorted(
        f"facelink-cluster-test-{job}" for job in ("ingest", "ingest", "extract", "build_index", "match"))
    assert_on_loopback_in_own_folders(standalone)
    index_files = store.list_files(f"{remote_root}/indexes")
    assert index_files and all(f.endswith((".faiss", ".ids.npy")) for f in index_files)
    assert sorted(p.name for p in work.iterdir()) == sorted(
        f"{n}.log" for n in ("ingest", "ingest-p", "extract", "index", "match")), "the driver wrote in its folder"
    store.download(f"{remote_root}/tables", cluster_lake / "tables")  # Delta tables are files: read them here

    cfg = load_config("test", [f"lake.root={local_lake}", *AUDIT])
    ingest.run(spark, cfg, str(manifest), "gallery", "ingest-l")
    ingest.run(spark, cfg, str(probes), "probe", "ingest-p-l")
    extract.run(spark, cfg, None, "extract-l")
    build_index.run(spark, cfg, run_id="index-l")
    match.run(spark, cfg, run_id="match-l")

    assert photo_keys(spark, cluster_lake) == photo_keys(spark, local_lake)
    assert len(photo_keys(spark, local_lake)) == N_PHOTOS + N_PROBES
    on_cluster, local = faces_by_key(spark, cluster_lake), faces_by_key(spark, local_lake)
    assert on_cluster.keys() == local.keys()
    assert sum(k[4] == "ok" for k in local) >= N_PHOTOS * 0.9  # lfw_dev photos hold a face
    for key, embedding in local.items():
        other = on_cluster[key]
        if embedding is None or other is None:
            assert embedding is None and other is None, key
        else:
            assert np.max(np.abs(embedding - other)) <= 1e-6, key
    on_cluster_m, local_m = match_rows(spark, cluster_lake), match_rows(spark, local_lake)
    assert on_cluster_m.keys() == local_m.keys()
    for key, (record, photo, score) in local_m.items():
        assert on_cluster_m[key][:2] == (record, photo), key
        assert abs(on_cluster_m[key][2] - score) <= 1e-5, key
    twins = {f"P{i:03d}": f"C{i:03d}" for i in range(N_PROBES)}
    found = {p for (p, rank), (record, _, _) in local_m.items() if rank == 1 and twins.get(p) == record}
    assert len(found) >= N_PROBES - 1, (found, local_m)  # a probe is its gallery twin's very photo
    print(f"\nstandalone cluster: ingest, extract, index and match of {N_PHOTOS} + {N_PROBES} photos in "
          f"{cluster_s:.0f}s ({WORKERS} workers x 1 core)")
