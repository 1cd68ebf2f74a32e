"""Identity label fixes for lfw_dev, found by looking at the top "false" candidates of the dedup evaluation.

LFW files some people under two names and some photos under two people. Each entry below was checked by
eye on side-by-side thumbnails written by ``jobs.evaluate`` (see ``docs/accuracy.md``): a key is a person
name (all their photos) or a photo path (that photo only), the value the identity it belongs with. Only
certain cases are listed; look-alikes that could not be confirmed are left as LFW labels them.
Apply with ``jobs.evaluate --identity-fixes lfw``.
"""

from __future__ import annotations

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
