"""Calibration fitted by the real pipeline holds on people it never saw."""

from __future__ import annotations

from facelink.models import recogniser_id
from jobs.calibrate import load_calibration
from tests.conftest import PipelineLake


def test_heldout_fmr_within_factor_two(pipeline_lake: PipelineLake) -> None:
    res = pipeline_lake.results["calibrate"]
    checks = res.checks  # type: ignore[attr-defined]
    assert {c["target_fmr"] for c in checks} == {1e-2, 1e-3}
    for c in checks:
        assert 0.5 <= c["ratio"] <= 2.0, c
    cal = load_calibration(pipeline_lake.cfg, recogniser_id(pipeline_lake.cfg))
    assert cal.version == res.version  # type: ignore[attr-defined]
    assert cal.score_at_fmr(1e-3) > cal.score_at_fmr(1e-2)
    assert cal.fpir([cal.score_at_fmr(1e-3)], 1000)[0] > 0.5  # 1:N at N=1000 is far looser than 1:1
