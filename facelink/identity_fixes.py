"""Identity label fixes: known same-person photos filed under two names are not non-mates.

LFW files some people under two names and some photos under two people. Each entry of ``LFW_DEV_FIXES`` was
checked by eye on side-by-side thumbnails written by ``jobs.evaluate`` (see ``docs/accuracy.md``): a key is a
person name (all their photos) or a photo path relative to the set's folder (that photo only), the value the
identity it belongs with. Only certain cases are listed; look-alikes that could not be confirmed are left as
LFW labels them. The evaluation (``jobs.evaluate --identity-fixes lfw``) and the production calibration
(``jobs.calibrate``, on lfw_dev by default) apply the same fixes, so neither counts a known duplicate as a
false match.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from facelink.errors import InputError

LFW_DEV_FIXES: dict[str, str] = {
    # One person under two names: renaming, spelling, name order, nickname, married or full name.
    "Bison_Dele": "Brian_Williams",  # the NBA player Brian Williams took the name Bison Dele in 1998
    "Noer_Moeis": "Noer_Muis",
    "Hasan_Wirayuda": "Hassan_Wirajuda",
    "Yingfan_Wang": "Wang_Yingfan",
    "Dai_Chul_Chyung": "Chyung_Dai-chul",
    "Glenn_Rivers": "Doc_Rivers",
    "William_Pryor_Jr": "Bill_Pryor",
    "Talisa_Bratt": "Talisa_Soto",
    "Cristina_Kirchner": "Cristina_Fernandez",
    # The same photo filed under two people (one label is wrong; which one does not matter here).
    "Carlos_Beltran/Carlos_Beltran_0001.jpg": "Raul_Ibanez",
    "Bart_Hendricks/Bart_Hendricks_0001.jpg": "Ricky_Ray",
    "Eva_Amurri/Eva_Amurri_0001.jpg": "Emmy_Rossum",
    "Andrew_Caldecott/Andrew_Caldecott_0001.jpg": "Andrew_Gilligan",
}

#: Named fix lists for ``--identity-fixes``.
BUILTIN_FIXES = {"lfw": LFW_DEV_FIXES}


def load_fixes(spec: str | None) -> dict[str, str]:
    """Identity fixes by name (``lfw``) or from a CSV file with ``key,identity`` columns; None: no fixes.

    Raises:
        InputError: Neither a known name nor a readable CSV with those columns.
    """
    if not spec or spec == "none":
        return {}
    if spec in BUILTIN_FIXES:
        return dict(BUILTIN_FIXES[spec])
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"identity fixes {spec!r}: not one of {sorted(BUILTIN_FIXES)} nor a file")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"key", "identity"} <= set(rows[0]):
        raise InputError(f"identity fixes {path}: expected columns key,identity")
    return {r["key"]: r["identity"] for r in rows}


def apply_fixes(paths: Sequence[str], identities: Sequence[str], fixes: Mapping[str, str]) -> list[str]:
    """The identity of each photo after ``fixes`` (a photo's own path first, then its person's name)."""
    return [fixes.get(p, fixes.get(i, i)) for p, i in zip(paths, identities, strict=True)]
