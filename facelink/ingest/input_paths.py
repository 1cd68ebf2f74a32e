"""Where ingest may read: the allowed roots of ``ingest.allowed_roots`` and the verdict on one input path.

A manifest is untrusted: its ``path`` column may name any file the job's account can read. A path is read
only when it stays inside an allowed root, lexically and after symlinks are resolved, has no ``..``
component, uses an allowed URI scheme (``ingest.allowed_schemes``) and holds no glob character (Spark's file
sources would expand it). Anything else becomes a reject row with one of the reasons below, never a read.

Roots are folders or URIs; two placeholders stand for the run's own places: ``<manifest>`` (the manifest's
folder, or the input folder) and ``<data_dir>`` (``paths.data_dir``, for the development photo sets).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator, Sequence

import pandas as pd

MANIFEST_ROOT = "<manifest>"
DATA_DIR_ROOT = "<data_dir>"
#: Reject reasons of this module.
PATH_TRAVERSAL = "path_traversal"
SCHEME_NOT_ALLOWED = "scheme_not_allowed"
OUTSIDE_ALLOWED_ROOTS = "outside_allowed_roots"
SYMLINK_ESCAPE = "symlink_escape"
UNSUPPORTED_PATH = "unsupported_path_characters"

_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_GLOB_CHARS = frozenset("*?[]{}\\")


def scheme_of(uri: str) -> str:
    """``file`` for a plain path or ``file:`` URI, else the URI's scheme (lower-cased)."""
    match = _SCHEME_RE.match(uri)
    return match.group(1).lower() if match and not re.match(r"^[a-zA-Z]:[\\/]", uri) else "file"


def local_part(uri: str) -> str:
    """The local path of a ``file:`` URI or plain path."""
    if uri.startswith("file://"):
        return uri[len("file://"):] or "/"
    return uri[len("file:"):] if uri.startswith("file:") else uri


def resolve_roots(roots: Sequence[str], manifest_root: str, data_dir: str) -> list[str]:
    """The configured roots with the placeholders replaced; local ones absolute, without ``file:``."""
    out = []
    for root in roots:
        value = manifest_root if root == MANIFEST_ROOT else data_dir if root == DATA_DIR_ROOT else root
        out.append(os.path.abspath(local_part(value)) if scheme_of(value) == "file" else value.rstrip("/"))
    return out


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def path_verdict(given: str | None, source: str, roots: Sequence[str],
                 schemes: Sequence[str]) -> tuple[str, str] | None:
    """Why ``source`` (the qualified path of a manifest's ``given`` path) may not be read; None if it may.

    Args:
        given: the path as the manifest wrote it (None for a folder input's listed file).
        source: the path that would be read: ``file:/abs`` or a URI.
        roots: resolved allowed roots (:func:`resolve_roots`).
        schemes: allowed URI schemes (``file`` for local files).
    """
    for text in (given, source):
        if text is not None and ".." in re.split(r"[\\/]", text):
            return PATH_TRAVERSAL, "a '..' component"
    if any(c in _GLOB_CHARS for c in source):
        return UNSUPPORTED_PATH, "a glob character (* ? [ ] { } \\)"
    scheme = scheme_of(source)
    if scheme not in schemes:
        return SCHEME_NOT_ALLOWED, f"scheme {scheme!r} is not one of ingest.allowed_schemes"
    if scheme != "file":
        if any(_inside(source, r) for r in roots if scheme_of(r) == scheme):
            return None
        return OUTSIDE_ALLOWED_ROOTS, "not under an allowed root"
    local = posixpath.normpath(local_part(source))
    local_roots = [r for r in roots if scheme_of(r) == "file"]
    if not any(_inside(local, r) for r in local_roots):
        return OUTSIDE_ALLOWED_ROOTS, "not under an allowed root"
    real = os.path.realpath(local)
    if not any(_inside(real, os.path.realpath(r)) for r in local_roots):
        return SYMLINK_ESCAPE, "a symlink leads outside the allowed roots"
    return None


def make_verdict_fn(roots: Sequence[str], schemes: Sequence[str]) -> object:
    """Factory of the ``mapInPandas`` function: ``row_no, given_path, source_path`` -> ``row_no, path_reason,
    path_detail`` (the checks touch the filesystem, so they run where the files are read)."""
    roots, schemes = list(roots), list(schemes)

    def verdicts(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            rows = []
            for row_no, given, source in zip(batch["row_no"], batch["given_path"], batch["source_path"], strict=True):
                verdict = path_verdict(given, source, roots, schemes) if isinstance(source, str) else None
                rows.append((row_no, *(verdict or (None, None))))
            yield pd.DataFrame(rows, columns=["row_no", "path_reason", "path_detail"])

    return verdicts
