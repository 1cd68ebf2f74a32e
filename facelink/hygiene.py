"""What must never appear in logs, run records or audit rows, and a scanner that finds it.

Logs, ``runs`` and ``audit`` rows outlive erasure and retention (the audit is append-only), so they must carry
no biometric data and no secrets:

* no image bytes: as hex, base64 or Python ``bytes`` reprs they are long unbroken blobs;
* no embeddings: a vector printed as text is a long run of float literals (16 or more in a row, far more than
  a box, 5 landmarks or a handful of scores);
* no configuration secret (``facelink.config`` masks them by key; a value seen in clear is a leak).

:func:`find_leaks` is used by the hygiene and erasure tests over captured log records and table rows, and can
be pointed at a job's log file in CI.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Consecutive float literals that count as a printed vector.
MAX_FLOAT_RUN = 16
#: Longest hex or base64 run allowed: a sha256 (64 hex) or a run id fits, photo bytes never do.
MAX_BLOB_CHARS = 200

_FLOAT = r"[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?"
FLOAT_RUN_RE = re.compile(rf"{_FLOAT}(?:[\s,;]+(?:np\.float32\()?{_FLOAT}\)?){{{MAX_FLOAT_RUN - 1},}}")
HEX_BLOB_RE = re.compile(rf"[0-9a-fA-F]{{{MAX_BLOB_CHARS + 1},}}")
BASE64_BLOB_RE = re.compile(rf"[A-Za-z0-9+/]{{{MAX_BLOB_CHARS + 1},}}={{0,2}}")


def find_leaks(text: str, secrets: Iterable[str] = (), payloads: Iterable[bytes] = ()) -> list[str]:
    """Why ``text`` would leak biometric data or a secret; an empty list when it is clean.

    Args:
        text: a log, or rows rendered as text.
        secrets: values that must never appear in clear (e.g. a configured password).
        payloads: raw bytes (photos) whose hex, base64 or repr must not appear, even in part (their first
            48 bytes are searched in each form).
    """
    import base64

    found = []
    for name, pattern in (("float run", FLOAT_RUN_RE), ("hex blob", HEX_BLOB_RE), ("base64 blob", BASE64_BLOB_RE)):
        match = pattern.search(text)
        if match:
            found.append(f"{name} of {len(match.group())} chars at {match.start()}: {match.group()[:60]}...")
    for secret in secrets:
        if secret and secret in text:
            found.append("a secret in clear")
    for payload in payloads:
        head = payload[:48]
        forms = {"hex": head.hex(), "base64": base64.b64encode(head).decode()[:60], "repr": repr(head)[2:-1]}
        found.extend(f"photo bytes as {form}" for form, value in forms.items() if value and value in text)
    return found
