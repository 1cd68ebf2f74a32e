"""Estimated error rates as people read them: only the precision their calibration supports.

An estimate below the smallest rate its calibration measured (the *floor*: an FMR floor from the number of
non-mate pairs, an FPIR floor from the number of searches) is not a number anyone measured, so it is shown as
"below <floor>, beyond the measured range", never as "7.1e-12". Every report, notebook, log line and printed
table formats estimated rates with :func:`format_rate`.
"""

from __future__ import annotations

import math

#: Floor used where a record predates the floors being stored: what 4 million non-mate pairs support, rounded
#: up to a power of ten.
UNKNOWN_FLOOR = 1e-4
#: Relative tolerance below which a value counts as at the floor (stored estimates are clamped to it).
_AT_FLOOR = 1e-6


def format_rate(value: float | None, floor: float | None = UNKNOWN_FLOOR) -> str:
    """``value`` with two significant digits, or "below <floor>, beyond the measured range".

    Args:
        value: An estimated rate in [0, 1], or None / NaN when unknown.
        floor: The smallest rate the estimate's calibration measured; None uses :data:`UNKNOWN_FLOOR`; 0 for
            a rate that is a setting or an exact count, not an estimate.

    Returns:
        ``"0.0031"``, ``"2.5e-05"``, ``"below 0.0014, beyond the measured range"`` or ``"n/a"``.
    """
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    limit = UNKNOWN_FLOOR if floor is None or not math.isfinite(float(floor)) else float(floor)
    v = float(value)
    if limit > 0 and v <= limit * (1 + _AT_FLOOR):
        return f"below {_sig(limit)}, beyond the measured range"
    return _sig(v)


def _sig(value: float) -> str:
    """Two significant digits: 0.0031, 0.05, 2.5e-05."""
    return f"{value:.2g}"
