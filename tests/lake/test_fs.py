"""facelink.lake.fs on both kinds of lake: a local folder and a real S3-compatible server (tests/s3_server.py)."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

import tests.s3_server as s3_server_module
from facelink.config import LakeS3Conf
from facelink.lake.fs import (
    LakeFs,
    UnsupportedLakeUriError,
    join,
    staged_version,
    unpublished_versions,
)
from tests.listeners import listening, off_loopback
from tests.s3_server import S3Server


@pytest.fixture(params=["local", "file-uri", pytest.param("s3a", marks=pytest.mark.objectstore)])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LakeFs, str]]:
    """A LakeFs and an empty root of the kind the parameter names."""
    if request.param == "local":
        yield LakeFs(), str(tmp_path / "lake")
    elif request.param == "file-uri":
        yield LakeFs(), f"file://{tmp_path / 'lake'}"
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        root = server.uri(f"fs-{request.node.name.split('[')[0]}-{tmp_path.name}")
        lake_fs = LakeFs(server.s3_conf)
        yield lake_fs, root
        lake_fs.delete(root)


def test_join_appends_segments_and_refuses_walking_out() -> None:
    assert join("s3a://b/lake/", "indexes", "m1/v2") == "s3a://b/lake/indexes/m1/v2"
    assert join("/data/lake", "calibration", "x.json") == "/data/lake/calibration/x.json"
    assert join("/data/lake") == "/data/lake"
    for bad in ("..", "a/../b", "a b", "x;rm"):
        with pytest.raises(ValueError, match="not an allowed path segment"):
            join("/data/lake", bad)


def test_unsupported_schemes_and_relative_paths_are_refused() -> None:
    lake_fs = LakeFs()
    for uri in ("hdfs:///facelink/lake/x", "abfss://c@acct.dfs.core.windows.net/x", "gs://b/x"):
        with pytest.raises(UnsupportedLakeUriError, match="has no artefact filesystem"):
            lake_fs.read_bytes(uri)
    with pytest.raises(UnsupportedLakeUriError, match="absolute path or a URI"):
        lake_fs.exists("lake/x")
    with pytest.raises(UnsupportedLakeUriError, match="no bucket"):
        lake_fs.exists("s3a:///x")


def test_a_lake_fs_pickles_as_its_settings_alone() -> None:
    conf = LakeS3Conf(endpoint="127.0.0.1:1", ssl=False, credentials="static", access_key_id="a",
                      secret_access_key="b")
    lake_fs = LakeFs(conf)
    lake_fs.resolve("s3a://bucket/x")  # builds the pyarrow filesystem, which must not travel
    clone = pickle.loads(pickle.dumps(lake_fs))
    assert clone.s3 == conf and clone._s3fs is None
    assert "b" not in repr(lake_fs) and "secret" not in repr(conf)


def test_whole_files_round_trip(lake: tuple[LakeFs, str]) -> None:
    lake_fs, root = lake
    uri = join(root, "calibration", "m.json")
    assert not lake_fs.exists(uri)
    lake_fs.write_text(uri, '{"a": 1}')
    assert lake_fs.read_text(uri) == '{"a": 1}'
    lake_fs.write_bytes(uri, b"\x00\x01")  # replaces
    assert lake_fs.read_bytes(uri) == b"\x00\x01"
    assert lake_fs.exists(uri) and lake_fs.is_file(uri) and lake_fs.exists(join(root, "calibration"))
    with lake_fs.open_input(uri) as fh:
        fh.seek(1)
        assert fh.read() == b"\x01"
    with pytest.raises(FileNotFoundError):
        lake_fs.read_bytes(join(root, "missing.json"))


def test_a_failed_writer_leaves_nothing_behind(lake: tuple[LakeFs, str]) -> None:
    lake_fs, root = lake
    uri = join(root, "reports", "r1", "index.html")
    with pytest.raises(RuntimeError, match="midway"), lake_fs.open_output(uri) as fh:
        fh.write(b"<html>half")
        raise RuntimeError("midway")
    assert not lake_fs.exists(uri)
    assert lake_fs.list_files(root) == []


def test_streams_of_several_parts_round_trip(lake: tuple[LakeFs, str]) -> None:
    lake_fs, root = lake
    uri = join(root, "indexes", "big.bin")
    chunk = bytes(range(256)) * 4096  # 1 MiB
    with lake_fs.open_output(uri) as fh:
        for _ in range(12):  # 12 MiB: more than one part of a multipart upload
            fh.write(chunk)
    with lake_fs.open_input(uri) as fh:
        assert fh.read() == chunk * 12


def test_list_and_delete_prefixes(lake: tuple[LakeFs, str]) -> None:
    lake_fs, root = lake
    for name in ("a/1.txt", "a/b/2.txt", "c.txt"):
        lake_fs.write_text(join(root, name), name)
    assert lake_fs.list_files(root) == [join(root, n) for n in ("a/1.txt", "a/b/2.txt", "c.txt")]
    assert lake_fs.list_files(join(root, "a"), recursive=False) == [join(root, "a/1.txt")]
    assert lake_fs.list_files(join(root, "nothing")) == []
    lake_fs.delete(join(root, "a"))
    lake_fs.delete(join(root, "nothing"))  # nothing there: not an error
    assert lake_fs.list_files(root) == [join(root, "c.txt")]
    lake_fs.delete(join(root, "c.txt"))
    assert lake_fs.list_files(root) == []


def test_folders_go_up_and_down(lake: tuple[LakeFs, str], tmp_path: Path) -> None:
    lake_fs, root = lake
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "x.faiss").write_bytes(b"index")
    (src / "sub" / "y.npy").write_bytes(b"ids")
    lake_fs.upload(src, join(root, "v1"))
    lake_fs.upload(src / "x.faiss", join(root, "single.faiss"))
    assert lake_fs.list_files(join(root, "v1")) == [join(root, "v1/sub/y.npy"), join(root, "v1/x.faiss")]
    lake_fs.download(join(root, "v1"), tmp_path / "back")
    assert (tmp_path / "back" / "x.faiss").read_bytes() == b"index"
    assert (tmp_path / "back" / "sub" / "y.npy").read_bytes() == b"ids"
    lake_fs.download(join(root, "single.faiss"), tmp_path / "one" / "z.faiss")
    assert (tmp_path / "one" / "z.faiss").read_bytes() == b"index"


def test_cached_copy_is_keyed_by_digest_and_checked(lake: tuple[LakeFs, str], tmp_path: Path) -> None:
    lake_fs, root = lake
    uri = join(root, "indexes", "p0.faiss")
    lake_fs.write_bytes(uri, b"faiss bytes")
    digest = hashlib.sha256(b"faiss bytes").hexdigest()
    cache = tmp_path / "cache"
    local = lake_fs.cached_copy(uri, digest, cache)
    assert Path(local).read_bytes() == b"faiss bytes"
    if lake_fs.resolve(uri)[0] is lake_fs._local:
        assert not cache.exists()  # a local lake's file is read in place
        return
    assert local == str(cache / digest / "p0.faiss")
    lake_fs.write_bytes(uri, b"changed")  # versions are immutable: a digest names one content for good
    assert lake_fs.cached_copy(uri, digest, cache) == local and Path(local).read_bytes() == b"faiss bytes"
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(ValueError, match="does not match"):
        lake_fs.cached_copy(uri, wrong, cache)
    assert list((cache / wrong).iterdir()) == []  # no partial copy is left
    with pytest.raises(ValueError, match="not a lower-case hex sha256"):
        lake_fs.cached_copy(uri, "abc", cache)


def test_staged_versions_are_written_once_and_removed_when_the_writer_fails(lake: tuple[LakeFs, str]) -> None:
    lake_fs, root = lake
    base = join(root, "indexes", "m")
    with staged_version(lake_fs, base, "v1") as prefix:
        lake_fs.write_bytes(join(prefix, "p0.faiss"), b"one")
    with pytest.raises(FileExistsError), staged_version(lake_fs, base, "v1"):
        pass
    with pytest.raises(RuntimeError, match="killed"), staged_version(lake_fs, base, "v2") as prefix:
        lake_fs.write_bytes(join(prefix, "p0.faiss"), b"half")
        raise RuntimeError("killed")
    assert lake_fs.list_files(base) == [join(base, "v1/p0.faiss")]
    lake_fs.write_bytes(join(base, "v3", "p0.faiss"), b"left by a killed writer")
    assert unpublished_versions(lake_fs, base, published=["v1"]) == ["v3"]
    with pytest.raises(ValueError, match="not an allowed version name"), staged_version(lake_fs, base, "../v4"):
        pass


@pytest.mark.objectstore
def test_executors_read_the_lake_with_the_drivers_settings(spark: SparkSession, s3_server: S3Server) -> None:
    lake_fs = LakeFs(s3_server.s3_conf)
    root = s3_server.uri("executors")
    for i in range(4):
        lake_fs.write_text(join(root, f"part-{i}.txt"), f"shard {i}")

    def read_parts(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:  # lake_fs arrives pickled: its settings alone, the filesystem rebuilt here
            yield pd.DataFrame({"i": batch["i"], "text": [lake_fs.read_text(join(root, f"part-{i}.txt"))
                                                          for i in batch["i"]]})

    rows = spark.range(4).selectExpr("cast(id as int) as i").repartition(2) \
        .mapInPandas(read_parts, "i int, text string").collect()
    assert sorted((r.i, r.text) for r in rows) == [(i, f"shard {i}") for i in range(4)]
    lake_fs.delete(root)


@pytest.mark.objectstore
def test_the_s3_server_listens_on_loopback_only(s3_server: S3Server) -> None:
    ports = listening(s3_server.pid)
    assert ("127.0.0.1", s3_server.port) in ports
    assert off_loopback(ports) == set(), f"versitygw listens off loopback: {sorted(ports)}"


def test_without_the_built_server_the_tests_say_to_run_make_setup(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_server_module, "VERSITYGW", tmp_path / "absent" / "versitygw")
    with pytest.raises(pytest.fail.Exception, match=r"run `make setup`"), \
            s3_server_module.running_s3_server(tmp_path):
        pass
