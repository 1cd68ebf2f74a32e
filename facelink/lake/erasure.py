"""The files beside the tables that can quote an erased record, and the sweep that removes them.

Review reports and their thumbnails, the nightly summaries, Data Docs, Great Expectations validation results,
and the evaluation's and calibration's embedding caches are copies made for a purpose; all of them are
rebuilt by the job that wrote them. After an erasure, every such file that holds a trace of an erased record
goes: a report folder as a whole (``reports/<run_id>/``: its page names the thumbnails), any other file alone.

A trace is a record id (as a whole token), a photo id or its first :data:`PHOTO_ID_PREFIX` hex digits (report
pages and thumbnail names use prefixes), the file name the photo was ingested from, or the float32 bytes of
one of its embeddings. Files are searched as stored and decompressed (``.gz``, and zip members: ``.npz``).
The sweep goes through the lake's filesystem seam (``facelink.lake.fs.LakeFs``), so a lake on an object store
(``s3a://``) is swept the same way as a local one.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from facelink.lake.fs import LakeFs, is_local, join

log = logging.getLogger(__name__)

#: Folders under the lake that hold derived files (the tables and index files have their own erasure).
SWEPT_FOLDERS = ("reports", "dq_docs", "gx", "evaluation", "calibration")
#: Hex digits of a photo id that still single it out (report pages print 12, thumbnails are named by 32).
PHOTO_ID_PREFIX = 12
#: Shortest file name searched for (shorter ones, such as ``1.jpg``, would match unrelated text).
MIN_FILE_NAME = 6


@dataclass(frozen=True)
class Traces:
    """What identifies the erased records in a file."""

    record_ids: tuple[str, ...]
    photo_ids: tuple[str, ...]
    file_names: tuple[str, ...]
    vectors: tuple[bytes, ...]

    @classmethod
    def of(cls, record_ids: Iterable[str], photo_ids: Iterable[str], source_paths: Iterable[str],
           vectors: Iterable[bytes]) -> Traces:
        names = {p.rstrip("/").rsplit("/", 1)[-1] for p in source_paths if p}
        return cls(tuple(sorted(set(record_ids))), tuple(sorted(set(photo_ids))),
                   tuple(sorted(n for n in names if len(n) >= MIN_FILE_NAME)), tuple(v for v in vectors if v))

    def patterns(self) -> list[re.Pattern[bytes]]:
        """One bytes pattern per text trace: record ids as whole tokens, photo id prefixes, file names."""
        out = [re.compile(rb"(?<![\w.:@+-])" + re.escape(r.encode()) + rb"(?![\w.:@+-])") for r in self.record_ids]
        out += [re.compile(re.escape(p[:PHOTO_ID_PREFIX].encode())) for p in self.photo_ids]
        out += [re.compile(re.escape(n.encode())) for n in self.file_names]
        return out


def contents(source: Path | bytes) -> Iterator[bytes]:
    """The file's bytes, then its decompressed forms (gzip; every member of a zip, as ``.npz`` are)."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    yield data
    if data[:2] == b"\x1f\x8b":
        with contextlib.suppress(OSError, EOFError):
            yield gzip.decompress(data)
    if zipfile.is_zipfile(io.BytesIO(data)):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name in archive.namelist():
                    yield name.encode()
                    yield archive.read(name)
        except (zipfile.BadZipFile, OSError):
            pass


def holds(path: Path | str, traces: Traces, patterns: Sequence[re.Pattern[bytes]] | None = None,
          data: bytes | None = None) -> bool:
    """Whether the file's name or contents (``data``, else read from the local ``path``) hold a trace."""
    patterns = traces.patterns() if patterns is None else patterns
    name = str(path).rstrip("/").rsplit("/", 1)[-1].encode()
    if any(p.search(name) for p in patterns):
        return True
    for chunk in contents(data if data is not None else Path(path)):
        if any(p.search(chunk) for p in patterns) or any(v in chunk for v in traces.vectors):
            return True
    return False


def sweep(lake_root: str, traces: Traces, lake: LakeFs | None = None) -> list[str]:
    """Remove every derived file (or report folder) under the lake that holds a trace; return what went,
    relative to the lake root."""
    lake = lake if lake is not None else LakeFs()
    root = lake_root.rstrip("/")
    if is_local(root) and not root.startswith("/"):
        root = "/" + root.removeprefix("file:").lstrip("/")
    patterns = traces.patterns()
    removed: list[str] = []
    gone: set[str] = set()
    for folder in SWEPT_FOLDERS:
        for uri in lake.list_files(join(root, folder)):
            rel = uri[len(root) + 1:]
            unit = _report_folder(rel)
            if unit in gone or (unit is None and rel in gone):
                continue
            try:
                data = lake.read_bytes(uri)
            except FileNotFoundError:
                continue
            if not holds(uri, traces, patterns, data):
                continue
            if unit is not None:
                lake.delete(join(root, unit))
                gone.add(unit)
                removed.append(unit)
            else:
                lake.delete(uri)
                removed.append(rel)
    log.info("swept %d derived files or report folders that quoted erased records", len(removed))
    return removed


def _report_folder(rel: str) -> str | None:
    """``reports/<run_id>`` (or ``reports/evaluation/<run_id>``) holding ``rel``; None for a loose file."""
    parts = rel.split("/")
    if parts[0] != "reports" or len(parts) < 3:
        return None
    if parts[1] == "evaluation":
        return "/".join(parts[:3]) if len(parts) >= 4 else None
    return "/".join(parts[:2])
