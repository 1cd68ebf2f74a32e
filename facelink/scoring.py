"""Scores to error-rate estimates and review bands, as Spark columns, from a model's calibration."""

from __future__ import annotations

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from facelink.calibration import Calibration
from facelink.errors import InputError


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
    return {name: float(cal.score_at_fpir(level, n)) for name, level in bands.items()}


def fpir_udf(cal: Calibration, n: int) -> F.UserDefinedFunction:
    """A vectorised UDF: score -> estimated FPIR for a gallery of ``n``."""
    payload = cal.to_json()

    @F.pandas_udf(T.DoubleType())  # type: ignore[call-overload]
    def fpir(scores: pd.Series) -> pd.Series:
        from facelink.calibration import Calibration as Cal

        return pd.Series(Cal.from_json(payload).fpir(scores.to_numpy(), n))

    return fpir


def fmr_udf(cal: Calibration) -> F.UserDefinedFunction:
    """A vectorised UDF: score -> estimated FMR of one comparison."""
    payload = cal.to_json()

    @F.pandas_udf(T.DoubleType())  # type: ignore[call-overload]
    def fmr(scores: pd.Series) -> pd.Series:
        from facelink.calibration import Calibration as Cal

        return pd.Series(Cal.from_json(payload).fmr(scores.to_numpy()))

    return fmr
