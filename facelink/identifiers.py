"""Allow-lists for the identifiers that reach a path, a Delta predicate or a file name.

One pattern per kind of identifier, checked at the command line (:func:`argparse_type`) and again in the
library where the value becomes a path or a predicate: a value that passes can name one folder or one SQL
string literal and nothing more (no ``/``, no ``..``, no quote, no backslash, no whitespace, no glob
character). Everything else is refused with a :class:`ValueError` that names the kind.

=============  ==========================================================================================
run id         ``<job>-<UTC stamp>-<8 hex>`` or ``<task>-<date>``: letters, digits, ``_ . -``, up to 128
partition      an archive partition (a metadata value or ``b<bucket>``): letters, digits, ``_ . -``, up to 64
model id       ``<name>@<12 hex>[+flip][+d480]...``: letters, digits, ``_ . - @ +``, up to 200
photo id       the sha256 of the photo's bytes: 64 lower-case hex digits
operator       who runs a job: letters, digits, space, ``_ . @ -``, up to 64
authority      a legal authority or case reference: letters, digits, space, ``_ . / : # ( ) , -``, up to 128
=============  ==========================================================================================

None of them starts with a dot or a space, and none holds ``..``. Record ids are not on the list: they name no path
(thumbnails are named by photo id) and reach Delta only as data, in DataFrames joined by MERGE, so an archive
keeps its own id format (the evaluation's are ``<set>/<path>``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Final

PATTERNS: Final[dict[str, re.Pattern[str]]] = {
    "run id": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"),
    "partition": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"),
    "model id": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,199}"),
    "photo id": re.compile(r"[0-9a-f]{64}"),
    # accountability fields: they reach command lines (--set audit.operator=...) and the audit table
    "operator": re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.@-]{0,63}"),
    "authority": re.compile(r"[A-Za-z0-9][A-Za-z0-9 _./:#(),-]{0,127}"),
}


def check(kind: str, value: object) -> str:
    """Return ``value`` if it is a valid identifier of ``kind``.

    Raises:
        ValueError: ``value`` is not a string matching the kind's pattern (the message quotes it with repr,
            so control characters show).
        KeyError: ``kind`` is not one of :data:`PATTERNS`.
    """
    pattern = PATTERNS[kind]
    if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
        raise ValueError(f"invalid {kind} {value!r}: expected {pattern.pattern} (and no '..')")
    return value


def json_pattern(kind: str) -> str:
    """The kind's allow-list as an anchored JSON Schema ``pattern`` (for Airflow's trigger-time params)."""
    return rf"^(?!.*\.\.){PATTERNS[kind].pattern}$"


def is_valid(kind: str, value: object) -> bool:
    """Whether ``value`` is a valid identifier of ``kind``."""
    try:
        check(kind, value)
    except ValueError:
        return False
    return True


def run_id(value: str) -> str:
    return check("run id", value)


def partition(value: str) -> str:
    return check("partition", value)


def model_id(value: str) -> str:
    return check("model id", value)


def path_part(model: str) -> str:
    """The folder name of a model id under the lake (``@`` becomes ``_``), after checking it."""
    return check("model id", model).replace("@", "_")


def argparse_type(kind: str) -> Callable[[str], str]:
    """An argparse ``type=`` that refuses an invalid identifier with a usage error (exit code 2)."""

    def parse(value: str) -> str:
        try:
            return check(kind, value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    parse.__name__ = kind.replace(" ", "_")
    return parse
