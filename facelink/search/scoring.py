"""Scores to error-rate estimates and review bands, as Spark columns, from a model's calibration.

Band FPIR levels become score thresholds through the calibration's measured FPIR model for the gallery's
size, and a candidate's estimated FPIR comes from the same model. Stored estimates never claim more precision
than the calibration measured: an FPIR below the model's floor is stored as the floor, an FMR below the
smallest FMR measured on non-mate pairs as that floor; the run's audit detail records both floors
(:func:`precision_detail`) and every display says "below <floor>, beyond the measured range".
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from facelink.errors import InputError
from facelink.rates import format_rate
from facelink.search.calibration import Calibration

log = logging.getLogger(__name__)


def band_col(score: Column, thresholds: dict[str, float]) -> Column:
    """The tightest band whose score threshold ``score`` reaches (bands sorted strictest first)."""
    expr: Column | None = None
    for name, threshold in sorted(thresholds.items(), key=lambda kv: -kv[1]):
        expr = F.when(score >= F.lit(threshold), F.lit(name)) if expr is None else expr.when(
            score >= F.lit(threshold), F.lit(name))
    assert expr is not None
    return expr


def band_thresholds(cal: Calibration, bands: dict[str, float], n: int) -> dict[str, float]:
    """Score threshold of each band (its FPIR level) for a gallery of ``n``."""
    if not bands:
        raise InputError("match.bands is empty: at least one FPIR level is needed")
    thresholds = {name: float(cal.score_at_fpir(level, n)) for name, level in bands.items()}
    floor = cal.fpir_floor
    for name, level in sorted(bands.items(), key=lambda kv: kv[1]):
        beyond = floor is not None and level < floor
        log.info("band %s: FPIR %s at N=%d -> score >= %.4f%s", name, format_rate(level, 0.0), n, thresholds[name],
                 f" (FPIR below {format_rate(floor, 0.0)} is beyond the measured range: extrapolated)" if beyond
                 else "")
    return thresholds


def precision_detail(cal: Calibration, bands: dict[str, float], n: int) -> dict[str, Any]:
    """What a run's audit detail records about the precision of its estimates and thresholds."""
    model = cal.fpir_model
    return {
        "fmr_floor": cal.fmr_floor,
        "fpir_floor": cal.fpir_floor,
        "fpir_model": model.describe(n, bands) if model is not None else None,
    }


def fpir_udf(cal: Calibration, n: int) -> F.UserDefinedFunction:
    """A vectorised UDF: score -> estimated FPIR for a gallery of ``n`` (the measured model, clamped to its floor)."""
    payload = cal.to_json()

    @F.pandas_udf(T.DoubleType())  # type: ignore[call-overload]
    def fpir(scores: pd.Series) -> pd.Series:
        from facelink.search.calibration import Calibration as Cal

        return pd.Series(Cal.from_json(payload).fpir(scores.to_numpy(), n))

    return fpir


def fmr_udf(cal: Calibration) -> F.UserDefinedFunction:
    """A vectorised UDF: score -> estimated FMR of one comparison (at least the calibration's FMR floor)."""
    payload = cal.to_json()

    @F.pandas_udf(T.DoubleType())  # type: ignore[call-overload]
    def fmr(scores: pd.Series) -> pd.Series:
        from facelink.search.calibration import Calibration as Cal

        c = Cal.from_json(payload)
        return pd.Series(np.maximum(c.fmr(scores.to_numpy()), c.fmr_floor))

    return fmr
