"""The labelled photo set an evaluation runs on, and the digests that pin what was measured.

A labelled set is a folder with a ``manifest.csv`` (``path`` relative to the folder, ``identity``, and
optionally ``sha256`` and a group column such as a capture condition), laid out as the sets under
``paths.data_dir``. Each photo becomes one record of the lake's ``photos`` table with the record id
``<set name>/<path>``, so the evaluation can find its embeddings again without a side table, and the same
photo used by several protocols (LFW pairs, the 1:N archive) is ingested and extracted once.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelink.errors import InputError
from facelink.identity_fixes import apply_fixes, load_fixes

__all__ = ["SET_COLUMN", "LabelledSet", "data_digest", "load_fixes", "read_labelled_set", "write_ingest_manifest"]

#: Manifest column copied into ``photos.metadata`` and used as the ingest partition of evaluation photos.
SET_COLUMN = "eval_set"


@dataclass(frozen=True)
class LabelledSet:
    """Photos with identity (and optional group) labels.

    Attributes:
        name: The set's name (its folder name); prefix of its record ids.
        root: Folder the manifest's paths are relative to.
        manifest: The manifest file.
        paths: Photo paths relative to ``root``, sorted.
        identities: Identity of each photo, aligned with ``paths``.
        photo_ids: sha256 of each photo's bytes (from the manifest's ``sha256`` column, else computed).
        groups: Group label of each photo, or None when the set has none.
    """

    name: str
    root: Path
    manifest: Path
    paths: tuple[str, ...]
    identities: tuple[str, ...]
    photo_ids: tuple[str, ...]
    groups: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.paths)
        if not n or len(self.identities) != n or len(self.photo_ids) != n:
            raise ValueError(f"labelled set {self.name}: paths, identities and photo ids must align and be non-empty")
        if self.groups is not None and len(self.groups) != n:
            raise ValueError(f"labelled set {self.name}: {len(self.groups)} group labels for {n} photos")
        if len(set(self.paths)) != n:
            raise ValueError(f"labelled set {self.name}: duplicate paths in {self.manifest}")

    def __len__(self) -> int:
        return len(self.paths)

    def record_id(self, path: str) -> str:
        """The ``photos.record_id`` of the photo at ``path`` (relative to the set's folder)."""
        return f"{self.name}/{path}"

    @property
    def record_ids(self) -> list[str]:
        """Record ids of all photos, aligned with ``paths``."""
        return [self.record_id(p) for p in self.paths]

    def index(self) -> dict[str, int]:
        """Position of each relative path."""
        return {p: i for i, p in enumerate(self.paths)}

    def identity_codes(self) -> np.ndarray:
        """int64 [n] identity code of each photo (codes follow sorted identity names)."""
        names = sorted(set(self.identities))
        code = {name: i for i, name in enumerate(names)}
        return np.array([code[i] for i in self.identities], dtype=np.int64)

    def digest(self, extra_files: Iterable[Path] = ()) -> str:
        """sha256 over the manifest's bytes, any ``extra_files`` (pairs, protocol files) and the photo ids."""
        return data_digest([self.manifest, *extra_files], self.photo_ids)


def read_labelled_set(
    manifest: str | Path, group_column: str | None = None, group_pattern: str | None = None,
    fixes: Mapping[str, str] | None = None,
) -> LabelledSet:
    """Read a labelled set's manifest.

    Args:
        manifest: ``manifest.csv`` with ``path`` and ``identity`` columns (``sha256`` optional).
        group_column: Manifest column holding each photo's group label.
        group_pattern: Regular expression searched in each path; its first group is the label (e.g.
            ``_([a-z]+)\\.png$`` on Yale A's ``subject01/subject01_leftlight.png``). Exclusive with
            ``group_column``.
        fixes: Identity corrections: a person name (all their photos) or a relative photo path (that photo)
            -> the identity it belongs with (see :mod:`facelink.identity_fixes`).

    Raises:
        InputError: The manifest is missing, lacks a column, or a path does not match ``group_pattern``.
    """
    path = Path(manifest)
    if not path.is_file():
        raise InputError(f"labelled manifest not found: {path}")
    if group_column and group_pattern:
        raise InputError("give a group column or a group pattern, not both")
    with path.open(newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r.get("path") or "")
    need = {"path", "identity"} | ({group_column} if group_column else set())
    missing = need - set(rows[0] if rows else {})
    if not rows or missing:
        raise InputError(f"labelled manifest {path} is empty or lacks columns {sorted(missing)}")
    root = path.parent
    paths = tuple(r["path"] for r in rows)
    ids = tuple(r.get("sha256") or _file_sha256(root / p) for r, p in zip(rows, paths, strict=True))
    groups: tuple[str, ...] | None = None
    if group_column:
        groups = tuple(r[group_column] or "" for r in rows)
    elif group_pattern:
        regex = re.compile(group_pattern)
        found = [regex.search(p) for p in paths]
        bad = [p for p, m in zip(paths, found, strict=True) if m is None]
        if bad:
            raise InputError(f"group pattern {group_pattern!r} does not match {len(bad)} paths, e.g. {bad[0]}")
        groups = tuple(m.group(1) if m.groups() else m.group(0) for m in found if m is not None)
    fixes = fixes or {}
    identities = tuple(apply_fixes(paths, [r["identity"] for r in rows], fixes))
    return LabelledSet(root.name, root, path, paths, identities, ids, groups)


def write_ingest_manifest(labelled: LabelledSet, out: Path) -> Path:
    """Write the ``jobs.ingest`` manifest of the set (``record_id, path, eval_set``) to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["record_id", "path", SET_COLUMN])
        for rel in labelled.paths:
            writer.writerow([labelled.record_id(rel), str((labelled.root / rel).resolve()), labelled.name])
    return out


def data_digest(files: Sequence[Path], photo_ids: Iterable[str], extra: str = "") -> str:
    """sha256 over each file's bytes (length-prefixed, in order), ``extra`` text and the sorted photo ids."""
    h = hashlib.sha256()
    for f in files:
        data = Path(f).read_bytes()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    h.update(extra.encode())
    for pid in sorted(set(photo_ids)):
        h.update(pid.encode())
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
