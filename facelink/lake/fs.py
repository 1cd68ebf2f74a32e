"""The lake's filesystem seam: every non-Delta artefact goes through here, on the driver and the executors.

Delta tables are read and written by Spark through Hadoop's filesystems. Everything else under the lake root
(index files, calibration, reports, Data Docs, evaluation outputs) is read and written with :class:`LakeFs`,
over ``pyarrow.fs``: pyarrow is already a dependency, its ``S3FileSystem`` (the AWS C++ SDK) takes an endpoint,
a scheme and path-style addressing, and it runs the same in the driver and in Python workers without a JVM.
fsspec with s3fs would add aiobotocore and botocore for the same reach.

Both reach the store from one :class:`~facelink.config.LakeS3Conf`: ``facelink.session.s3a_hadoop_settings``
turns it into Spark's ``spark.hadoop.fs.s3a.*`` settings and :class:`LakeFs` into pyarrow's options. A ``LakeFs`` pickles
as that frozen value alone, so executors rebuild it from plain values, never from a configuration file.

URIs taken (``SUPPORTED_SCHEMES``):

* an absolute local path or ``file:///path``: the local filesystem (a cluster's shared mount included);
* ``s3a://bucket/key``: an S3-compatible store (AWS S3, or any endpoint given in ``lake.s3``).

``hdfs://`` (pyarrow's HadoopFileSystem needs libhdfs and a Hadoop CLASSPATH on every node), ``abfss://``,
``gs://`` and other schemes raise :class:`UnsupportedLakeUriError`: their Delta tables work through Spark, but
their artefacts have no seam yet.

Object stores have no atomic rename, so artefacts are published the Delta way: written once under a new
versioned prefix (:func:`staged_version`) and put in force by a Delta commit that names the version (the
index manifest). Readers follow that commit, never a listing, so a writer killed midway leaves the previous
version in force and only an unpublished prefix behind (:func:`unpublished_versions`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from facelink.config import Config, LakeS3Conf

log = logging.getLogger(__name__)

SUPPORTED_SCHEMES = ("file", "s3a")
#: A version or path segment named by a caller: letters, digits, ``. _ = + -`` (model ids hold ``+``);
#: never ``.`` or ``..``.
SEGMENT_RE = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9._=+-]+$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20

class UnsupportedLakeUriError(ValueError):
    """A URI whose scheme has no filesystem here, or a relative path."""


def scheme_of(uri: str) -> str:
    """``file`` for a local path or ``file:`` URI, else the URI's scheme (lower case)."""
    if uri.startswith("/"):
        return "file"
    scheme = urlsplit(uri).scheme.lower()
    if not scheme:
        raise UnsupportedLakeUriError(f"{uri!r}: a lake location must be an absolute path or a URI")
    return scheme


def is_local(uri: str) -> bool:
    """Whether ``uri`` is on the local filesystem (an absolute path or ``file:``)."""
    return scheme_of(uri) == "file"


def local_path(uri: str) -> Path:
    """The local path of a local lake location (an absolute path or ``file:`` URI).

    Raises:
        UnsupportedLakeUriError: ``uri`` is not local.
    """
    if not is_local(uri):
        raise UnsupportedLakeUriError(f"{uri!r} is not a local path")
    return Path(urlsplit(uri).path if uri.startswith("file:") else uri)


def join(base: str, *parts: str) -> str:
    """``base`` with ``parts`` appended, one ``/`` between each.

    Each part may hold several ``/``-separated segments; a segment that is empty after stripping slashes is
    skipped, and one that is ``.``, ``..`` or holds characters outside ``[A-Za-z0-9._=+-]`` raises ValueError,
    so an identifier never walks out of the lake.
    """
    segments: list[str] = []
    for part in parts:
        for segment in part.split("/"):
            if not segment:
                continue
            if not SEGMENT_RE.match(segment):
                raise ValueError(f"join: {segment!r} is not an allowed path segment (letters, digits, . _ = + -)")
            segments.append(segment)
    return "/".join([base.rstrip("/") or "/", *segments]) if segments else base


class LakeFs:
    """Files under the lake root, local or on an S3-compatible store, by URI.

    Args:
        s3: how to reach ``s3a://`` URIs (``cfg.lake.s3``); plain values, so executors rebuild the same filesystem.

    Writes of whole files are atomic for readers: a local file is written beside its target and renamed, an
    object is one PUT or one completed multipart upload.
    """

    def __init__(self, s3: LakeS3Conf | None = None) -> None:
        self.s3 = s3 if s3 is not None else LakeS3Conf()
        self._s3fs: pafs.S3FileSystem | None = None
        self._local = pafs.LocalFileSystem()

    def __getstate__(self) -> dict[str, Any]:
        return {"s3": self.s3}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["s3"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"LakeFs(endpoint={self.s3.endpoint or 'aws'!r}, credentials={self.s3.credentials!r})"

    # --- locations ---------------------------------------------------------------------------------------------

    def resolve(self, uri: str) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem of ``uri`` and the path within it.

        Raises:
            UnsupportedLakeUriError: a relative path, or a scheme other than ``file`` and ``s3a``.
        """
        scheme = scheme_of(uri)
        if scheme == "file":
            path = urlsplit(uri).path if uri.startswith("file:") else uri
            if not path.startswith("/"):
                raise UnsupportedLakeUriError(f"{uri!r}: a file URI needs an absolute path (file:///...)")
            return self._local, path
        if scheme == "s3a":
            parts = urlsplit(uri)
            if not parts.netloc:
                raise UnsupportedLakeUriError(f"{uri!r}: no bucket (expected s3a://bucket/key)")
            return self._s3(), f"{parts.netloc}{parts.path}".rstrip("/")
        raise UnsupportedLakeUriError(
            f"{uri!r}: scheme {scheme!r} has no artefact filesystem (supported: {', '.join(SUPPORTED_SCHEMES)}); "
            "Delta tables reach it through Spark, but index files, calibration and reports need file:// or s3a://")

    def _s3(self) -> pafs.S3FileSystem:
        if self._s3fs is None:
            s3 = self.s3
            options: dict[str, Any] = {"region": s3.region, "scheme": "https" if s3.ssl else "http"}
            if s3.endpoint:
                options["endpoint_override"] = s3.endpoint
                options["force_virtual_addressing"] = not s3.path_style_access
            if s3.credentials == "static":
                options.update(access_key=s3.access_key_id, secret_key=s3.secret_access_key,
                               session_token=s3.session_token or None)
            elif s3.credentials == "anonymous":
                options["anonymous"] = True
            self._s3fs = pafs.S3FileSystem(**options)
        return self._s3fs

    # --- whole files -------------------------------------------------------------------------------------------

    def read_bytes(self, uri: str) -> bytes:
        """The content of the file at ``uri``. Raises FileNotFoundError if there is none."""
        fs, path = self.resolve(uri)
        with fs.open_input_stream(path) as stream:
            data: bytes = stream.read()
        return data

    def read_text(self, uri: str, encoding: str = "utf-8") -> str:
        return self.read_bytes(uri).decode(encoding)

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write ``data`` to ``uri`` (parents created), replacing what was there, atomically for readers."""
        with self.open_output(uri) as fh:
            fh.write(data)

    def write_text(self, uri: str, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(uri, text.encode(encoding))

    @contextmanager
    def open_input(self, uri: str) -> Iterator[IO[bytes]]:
        """A binary stream over the file at ``uri``, read as it is consumed (seekable)."""
        fs, path = self.resolve(uri)
        with fs.open_input_file(path) as stream:
            yield stream

    @contextmanager
    def open_output(self, uri: str) -> Iterator[IO[bytes]]:
        """A binary file to write ``uri``'s content into; it reaches ``uri`` only if the block exits cleanly.

        The content is spooled to a local temporary file first (next to a local target, for the rename), so a
        failed writer never leaves a partial file or object where a reader would find it.
        """
        fs, path = self.resolve(uri)
        if fs is self._local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            spool_dir = str(Path(path).parent)
        else:
            spool_dir = None
        with tempfile.NamedTemporaryFile(dir=spool_dir, prefix=".lakefs-", suffix=".part", delete=False) as tmp:
            try:
                yield tmp
                tmp.flush()
            except BaseException:
                tmp.close()
                os.unlink(tmp.name)
                raise
        try:
            if fs is self._local:
                os.replace(tmp.name, path)
            else:
                pafs.copy_files(tmp.name, path, source_filesystem=self._local, destination_filesystem=fs)
        finally:
            if os.path.exists(tmp.name):
                os.unlink(tmp.name)

    # --- prefixes ----------------------------------------------------------------------------------------------

    def exists(self, uri: str) -> bool:
        """Whether a file, or anything under the prefix, is at ``uri``."""
        fs, path = self.resolve(uri)
        return bool(fs.get_file_info(path).type != pafs.FileType.NotFound)

    def is_file(self, uri: str) -> bool:
        fs, path = self.resolve(uri)
        return bool(fs.get_file_info(path).type == pafs.FileType.File)

    def list_files(self, prefix: str, recursive: bool = True) -> list[str]:
        """URIs of the files under ``prefix`` (in ``prefix``'s own form), sorted; ``[]`` if there are none."""
        fs, path = self.resolve(prefix)
        try:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive, allow_not_found=True))
        except NotADirectoryError:
            return []
        rel = sorted(i.path[len(path):].lstrip("/") for i in infos if i.type == pafs.FileType.File)
        return [f"{prefix.rstrip('/')}/{r}" for r in rel]

    def delete(self, uri: str) -> None:
        """Delete the file at ``uri``, or everything under the prefix ``uri``; nothing there is not an error."""
        fs, path = self.resolve(uri)
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.File:
            fs.delete_file(path)
        elif kind == pafs.FileType.Directory:
            try:
                fs.delete_dir(path)  # one batched request per 1000 objects on S3
            except OSError:
                # A store over a POSIX folder (the tests' versitygw) refuses a batch that deletes a directory
                # marker before the objects under it: delete the files, then the markers, deepest first.
                log.debug("deleting %s object by object", uri)
                infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
                for info in infos:
                    if info.type == pafs.FileType.File:
                        fs.delete_file(info.path)
                dirs = [i.path for i in infos if i.type == pafs.FileType.Directory]
                for folder in sorted([*dirs, path], key=lambda d: d.count("/"), reverse=True):
                    if fs.get_file_info(folder).type == pafs.FileType.Directory:
                        fs.delete_dir(folder)

    # --- local copies ------------------------------------------------------------------------------------------

    def upload(self, local_path: str | Path, uri: str) -> None:
        """Copy a local file, or a folder and everything in it, to ``uri``."""
        fs, path = self.resolve(uri)
        source = str(local_path)
        if os.path.isdir(source):
            if fs is self._local:
                shutil.copytree(source, path, dirs_exist_ok=True)
            else:
                pafs.copy_files(source, path, source_filesystem=self._local, destination_filesystem=fs)
        else:
            with open(source, "rb") as fh, self.open_output(uri) as out:
                shutil.copyfileobj(fh, out, _CHUNK)

    def download(self, uri: str, local_path: str | Path) -> None:
        """Copy the file at ``uri``, or every file under the prefix ``uri``, to ``local_path``."""
        fs, path = self.resolve(uri)
        target = Path(local_path)
        if fs.get_file_info(path).type == pafs.FileType.File:
            target.parent.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(path, str(target), source_filesystem=fs, destination_filesystem=self._local)
            return
        for file_uri in self.list_files(uri):
            rel = file_uri[len(uri.rstrip("/")) + 1:]
            self.download(file_uri, target / rel)

    def cached_copy(self, uri: str, sha256: str, cache_dir: str | Path | None = None) -> str:
        """A local path holding the file at ``uri``, whose content must have digest ``sha256``.

        For FAISS and other readers that need a local file. A remote file is downloaded once per machine into
        ``<cache_dir>/<sha256>/<file name>`` (default cache: ``facelink-lake-cache`` in the temporary folder) and
        checked; every later call, from any Python worker, returns that path. Lake versions are immutable, so a
        digest names one content for good. A local file is returned where it is (the reader checks its digest).

        Raises:
            ValueError: ``sha256`` is not 64 lower-case hex digits, or the downloaded content has another digest.
        """
        if not _SHA256_RE.match(sha256):
            raise ValueError(f"cached_copy: {sha256!r} is not a lower-case hex sha256")
        fs, path = self.resolve(uri)
        if fs is self._local:
            return path
        folder = Path(cache_dir or Path(tempfile.gettempdir()) / "facelink-lake-cache") / sha256
        target = folder / Path(path).name
        if target.is_file():
            return str(target)
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f".{target.name}.{uuid.uuid4().hex}.part"
        try:
            digest = hashlib.sha256()
            with fs.open_input_stream(path) as stream, part.open("wb") as out:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise ValueError(f"{uri}: sha256 {digest.hexdigest()} does not match the expected {sha256}")
            os.replace(part, target)  # concurrent workers each rename a complete copy: the last one wins
        finally:
            part.unlink(missing_ok=True)
        log.info("cached %s in %s", uri, target)
        return str(target)


@functools.lru_cache(maxsize=8)
def _lake_for(s3: LakeS3Conf) -> LakeFs:
    return LakeFs(s3)


def lake_fs(cfg: Config) -> LakeFs:
    """The process's :class:`LakeFs` for ``cfg.lake.s3`` (one per setting, so its S3 client is reused)."""
    return _lake_for(cfg.lake.s3)


def lake_uri(cfg: Config, *parts: str) -> str:
    """``<lake.root>/<parts>`` (see :func:`join`): where an artefact of the lake lives."""
    return join(cfg.lake_root, *parts)


def worker_cache_dir() -> str:
    """A local folder for the per-machine copies of lake files (:meth:`LakeFs.cached_copy`), never the working
    directory: ``FACELINK_LAKE_CACHE`` if set, else ``facelink-lake-cache`` in the first Spark local folder
    (``SPARK_LOCAL_DIRS``, which executors give their Python workers), else in the temporary folder."""
    explicit = os.environ.get("FACELINK_LAKE_CACHE")
    if explicit:
        return explicit
    local_dirs = [d for d in os.environ.get("SPARK_LOCAL_DIRS", "").split(",") if d.strip()]
    base = local_dirs[0].strip() if local_dirs else tempfile.gettempdir()
    return str(Path(base) / "facelink-lake-cache")


@contextmanager
def local_staging(prefix: str = "facelink-") -> Iterator[Path]:
    """A private local temporary folder (in the system's temporary folder, never the working directory) for
    libraries that need local files (FAISS, matplotlib, Great Expectations, report assembly); removed after."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield Path(folder)


@contextmanager
def staged_version(lake: LakeFs, base: str, version: str) -> Iterator[str]:
    """The prefix ``<base>/<version>`` for a new artefact version, written by the block and never before.

    The version is not in force when the block ends: the caller publishes it by the Delta commit that names it
    (for indexes, the ``index_manifest`` append). If the block raises, what it wrote is deleted; a process killed
    midway leaves an unpublished prefix that :func:`unpublished_versions` finds.

    Raises:
        ValueError: ``version`` is not one path segment of ``[A-Za-z0-9._=+-]``.
        FileExistsError: the prefix already holds files (versions are written once).
    """
    if not SEGMENT_RE.match(version):
        raise ValueError(f"staged_version: {version!r} is not an allowed version name "
                         "(letters, digits, . _ = + -)")
    prefix = join(base, version)
    if lake.list_files(prefix):
        raise FileExistsError(f"{prefix}: this version already exists; a version is written once")
    try:
        yield prefix
    except BaseException:
        log.warning("removing the unpublished version %s", prefix)
        lake.delete(prefix)
        raise


def unpublished_versions(lake: LakeFs, base: str, published: Iterable[str]) -> list[str]:
    """Versions with files under ``base`` that are not in ``published`` (left by a writer that did not finish)."""
    known = set(published)
    found = {uri[len(base.rstrip("/")) + 1:].split("/", 1)[0] for uri in lake.list_files(base)}
    return sorted(found - known)
