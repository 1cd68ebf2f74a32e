"""The whole chain on a lake in a real object store (``lake.root=s3a://...`` on the versitygw of tests/s3_server.py).

In processes of their own (tests/objectstore_chain.py), each in an empty temporary working directory:

1. calibrate (on 300 lfw_dev photos) and the nightly chain (``facelink.nightly``: ingest, quality, extract,
   calibrate (kept), build_index, dedup, match, report, the summary) on the object store;
2. a ``build_index --full`` that writes its new version's files and is killed (SIGKILL) before its manifest
   commit: the version in force stays the previous one, and match still runs against it;
3. erase of one gallery record: it rebuilds the index and purges every index file that no version in force
   names (the killed build's unpublished files included), and sweeps the derived files;
4. the same nightly chain with a local lake (given the same calibration).

Nothing may be written under the repository or in the working directories, and the candidates (matches and
duplicate pairs: ids, bands, scores within 1e-5) must equal those of the local lake.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from facelink.lake.fs import LakeFs
from facelink.registry import recogniser_id
from facelink.sample import SampleSizes, build_sample
from tests.paths import LFW_DIR, REPO_ROOT
from tests.s3_server import S3Server

pytestmark = pytest.mark.objectstore

RUN_DATE = "2026-11-30"
SIZES = SampleSizes(duplicates=3, mated_probes=3, renewals=1, unmated_probes=2, singles=6)
CALIBRATION_PHOTOS = 300
ACCOUNTABLE = ["--operator", "objectstore-test", "--authority", "TEST-S3"]
ERASE = ["audit.operator=objectstore-test", "audit.purpose=erasure_request", "audit.authority=ERASURE-S3"]
#: Not compared: the repository's ignored heavy folders and what other processes may write (bytecode, caches).
SNAPSHOT_SKIP = {".git", ".venv", ".models", ".tools", ".jars", ".airflow-venv", "__pycache__", ".mypy_cache",
                 ".ruff_cache", ".pytest_cache", "shared"}
STEP_TIMEOUT_S = 900


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (less :data:`SNAPSHOT_SKIP` folders): size and mtime in ns; every folder."""
    out: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SNAPSHOT_SKIP]
        out.update({str(Path(folder, d).relative_to(root)) + "/": (0, 0) for d in dirs})
        for name in files:
            path = Path(folder, name)
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def chain(steps: list[tuple[str, list[str]]], overrides: list[str], out: Path, cwd: Path, env: dict[str, str],
          runs: Sequence[str] = (), block_publish: bool = False) -> subprocess.Popen[str]:
    """Start tests/objectstore_chain.py in ``cwd`` (a process group of its own)."""
    args = [sys.executable, "-m", "tests.objectstore_chain", "--steps", json.dumps(steps), "--out", str(out),
            "--runs", ",".join(runs), *(f"--set={o}" for o in overrides)]
    if block_publish:
        args.append("--block-publish")
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen[str], out: Path) -> dict[str, Any]:
    try:
        stdout, stderr = proc.communicate(timeout=STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{stdout[-2000:]}\n{stderr[-6000:]}"
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def nightly_step(sample: Path, overrides: list[str]) -> tuple[str, list[str]]:
    return ("facelink.nightly", ["--env", "test", "--sample", str(sample), "--run-date", RUN_DATE, *ACCOUNTABLE,
                                 *(f"--set={o}" for o in overrides)])


def assert_same_candidates(got: list[list[Any]], want: list[list[Any]]) -> None:
    assert [r[:-1] for r in got] == [r[:-1] for r in want]
    for a, b in zip(got, want, strict=True):
        assert abs(a[-1] - b[-1]) <= 1e-5, (a, b)


def test_the_nightly_chain_on_an_object_store(s3_server: S3Server, tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    build_sample(LFW_DIR, sample, SIZES, seed=5)
    with (sample / "truth.csv").open() as fh:
        gallery_records = sorted(r["record_id"] for r in csv.DictReader(fh) if r["role"] == "gallery")
    lake = LakeFs(s3_server.s3_conf)
    root = s3_server.uri("pipeline")
    remote = [f"lake.root={root}", *s3_server.overrides()]
    env = {**os.environ, **s3_server.env(), "PYTHONPATH": str(REPO_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    runs = [f"match-{RUN_DATE}", f"dedup-{RUN_DATE}"]
    before = tree_snapshot(REPO_ROOT)
    timings: dict[str, float] = {}

    # 1. calibrate and the nightly chain on the object store
    start = time.perf_counter()
    calibrate = ("jobs.calibrate", ["--env", "test", "--limit", str(CALIBRATION_PHOTOS), "--run-id", "calibrate-s3",
                                    *(f"--set={o}" for o in remote)])
    work = tmp_path / "cwd-s3"
    s3_out = finish(chain([calibrate, nightly_step(sample, remote)], remote, tmp_path / "s3.json", work, env, runs),
                    tmp_path / "s3.json")
    timings["calibrate + nightly on s3a"] = time.perf_counter() - start
    assert s3_out["index_version"] and s3_out["matches"] and s3_out["duplicates"]
    assert all(f.startswith(f"{root}/indexes/") for f in s3_out["index_files"])
    files = lake.list_files(root)
    rel = {f[len(root) + 1:] for f in files}
    for prefix in ("tables/photos/_delta_log/", "tables/index_manifest/", f"reports/report-{RUN_DATE}/",
                   "calibration/", "gx/validations/", "dq_docs/"):
        assert any(r.startswith(prefix) for r in rel), f"nothing under {root}/{prefix}"
    assert f"reports/nightly-{RUN_DATE}.json" in rel
    assert f"reports/report-{RUN_DATE}/index.html" in rel and "dq_docs/index.html" in rel
    assert any(r.startswith(f"reports/report-{RUN_DATE}/thumbs/") for r in rel)
    assert set(s3_out["index_files"]) <= set(files)

    # 2. a build killed after writing its files and before its manifest commit changes nothing in force
    start = time.perf_counter()
    known = set(lake.list_files(f"{root}/indexes"))
    work_kill = tmp_path / "cwd-kill"
    proc = chain([("jobs.build_index", ["--env", "test", "--full", "--run-id", "index-killed",
                                        *(f"--set={o}" for o in remote)])],
                 remote, tmp_path / "killed.json", work_kill, env, block_publish=True)
    deadline = time.monotonic() + STEP_TIMEOUT_S
    new: list[str] = []
    while not new and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        new = sorted(set(lake.list_files(f"{root}/indexes")) - known)
    os.killpg(proc.pid, signal.SIGKILL)
    _, stderr = proc.communicate()
    assert new, f"the build wrote no file under {root}/indexes before it ended:\n{stderr[-4000:]}"
    killed_prefix = new[0].rsplit("/", 1)[0]
    assert killed_prefix.rsplit("/", 1)[-1] != s3_out["index_version"]
    timings["killed build_index"] = time.perf_counter() - start

    # 3. match still runs against the version in force; erase rebuilds and purges the unpublished files
    start = time.perf_counter()
    erased = gallery_records[0]
    match = ("jobs.match", ["--env", "test", "--run-id", "match-after-kill", "--probe-run-id",
                            f"ingest_probes-{RUN_DATE}", "--set=audit.operator=objectstore-test",
                            "--set=audit.purpose=application_screening", "--set=audit.authority=TEST-S3",
                            *(f"--set={o}" for o in remote)])
    after = finish(chain([match], remote, tmp_path / "after.json", tmp_path / "cwd-match", env,
                         ["match-after-kill"]), tmp_path / "after.json")
    assert after["index_version"] == s3_out["index_version"]
    same_run = [[f"match-{RUN_DATE}", *r[1:]] for r in after["matches"]]
    assert_same_candidates(same_run, [r for r in s3_out["matches"] if r[0] == f"match-{RUN_DATE}"])
    assert any(f.startswith(killed_prefix + "/") for f in lake.list_files(f"{root}/indexes"))
    erase = ("jobs.erase", ["--env", "test", "--run-id", "erase-s3", "--record-id", erased,
                            *(f"--set={o}" for o in [*ERASE, *remote])])
    erased_out = finish(chain([erase], remote, tmp_path / "erased.json", tmp_path / "cwd-erase", env, runs),
                        tmp_path / "erased.json")
    timings["match + erase on s3a"] = time.perf_counter() - start
    assert erased_out["index_version"] != s3_out["index_version"]
    assert set(lake.list_files(f"{root}/indexes")) == set(erased_out["index_files"])
    assert not any(erased in row[1:3] for row in erased_out["duplicates"])

    # nothing written under the repository or in the working directories
    assert tree_snapshot(REPO_ROOT) == before
    for cwd in ("cwd-s3", "cwd-kill", "cwd-match", "cwd-erase"):
        assert list((tmp_path / cwd).iterdir()) == [], cwd

    # 4. the same chain on a local lake, with the same calibration, gives the same candidates
    start = time.perf_counter()
    local_lake = tmp_path / "local" / "lake"
    lake.download(f"{root}/calibration", local_lake / "calibration")
    local = [f"lake.root={local_lake}"]
    local_out = finish(chain([nightly_step(sample, local)], local, tmp_path / "local.json", tmp_path / "cwd-local",
                             env, runs), tmp_path / "local.json")
    timings["nightly on a local lake"] = time.perf_counter() - start
    assert_same_candidates(s3_out["matches"], local_out["matches"])
    assert_same_candidates(s3_out["duplicates"], local_out["duplicates"])
    model = recogniser_id(s3_server.config("pipeline"))
    assert (local_lake / "calibration" / f"{model.replace('@', '_')}.json").is_file()
    assert all(Path(f).is_file() and str(f).startswith(str(local_lake)) for f in local_out["index_files"])
    lake.delete(root)
    print("\n" + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
