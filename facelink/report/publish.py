"""Publishing a report folder under the lake: built in a local staging folder, then moved or copied in whole.

A local lake gets the folder renamed into place (a rerun with the same run id replaces the previous folder
in one swap, so a reader never sees half a report). A lake on an object store (``s3a://``) gets it uploaded
through the lake's filesystem seam (``facelink.lake.fs.LakeFs``): the previous objects of the same run id go
first, then every file is one PUT.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from facelink import identifiers
from facelink.lake.fs import LakeFs, is_local, join, local_path

log = logging.getLogger(__name__)


def report_dir(lake_root: str, run_id: str) -> str:
    """Where the report of ``run_id`` lives: ``<lake.root>/reports/<run_id>``."""
    return join(lake_root, "reports", identifiers.run_id(run_id))


def publish_folder(lake: LakeFs | None, staging: Path, dest: str) -> str:
    """Put the staging folder's contents at ``dest``, replacing what was there; return ``dest``."""
    target = local_path(dest) if is_local(dest) else None
    if target is None:
        store = lake if lake is not None else LakeFs()
        store.delete(dest)
        store.upload(staging, dest)
        shutil.rmtree(staging, ignore_errors=True)
        log.info("report uploaded to %s", dest)
        return dest
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    shutil.move(str(staging), str(target))
    if old.exists():
        shutil.rmtree(old)
    log.info("report published at %s", target)
    return str(target)
