"""Calibration fitted by the real pipeline holds on people it never saw; an archive calibrates on its own photos."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink.lake.tables import read_table
from facelink.registry import recogniser_id
from facelink.search.calibration import load_calibration
from jobs import calibrate, match
from tests.conftest import PipelineLake
from tests.paths import LFW_DIR


def test_heldout_fmr_within_factor_two(pipeline_lake: PipelineLake) -> None:
    res = pipeline_lake.results["calibrate"]
    checks = res.checks  # type: ignore[attr-defined]
    assert {c["target_fmr"] for c in checks} == {1e-2, 1e-3}
    for c in checks:
        assert 0.5 <= c["ratio"] <= 2.0, c
    cal = load_calibration(pipeline_lake.cfg, recogniser_id(pipeline_lake.cfg))
    assert cal.version == res.version  # type: ignore[attr-defined]
    assert cal.score_at_fmr(1e-3) > cal.score_at_fmr(1e-2)
    model = cal.fpir_model
    assert model is not None and model.searches == res.photos  # type: ignore[attr-defined]
    # The measured FPIR of a search rises with the gallery: a larger gallery needs a higher score for one band.
    assert cal.score_at_fpir(0.05, 1000) > cal.score_at_fpir(0.05, 100)
    fpir = res.fpir_check  # type: ignore[attr-defined]
    assert {r["band"] for r in fpir["rows"]} == {"strong", "possible"} and fpir["searches"] == res.photos  # type: ignore[attr-defined]


def _archive_manifest(folder: Path, people: int = 150) -> Path:
    """An archive's labelled manifest: its own record ids and person ids, photo paths absolute."""
    with (LFW_DIR / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_person: dict[str, list[str]] = {}
    for r in rows:
        by_person.setdefault(r["identity"], []).append(r["path"])
    # People with 2-3 photos, from the end of the alphabet (the pipeline lake's sample is seeded elsewhere).
    chosen = [p for p in sorted(by_person, reverse=True) if 2 <= len(by_person[p]) <= 3][:people]
    out = folder / "archive_labelled.csv"
    folder.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["record_id", "path", "identity"])
        for i, person in enumerate(chosen):
            for j, path in enumerate(by_person[person]):
                writer.writerow([f"rec-{i:04d}-{j}", str(LFW_DIR / path), f"person-{i:04d}"])
    return out


def test_calibrate_on_an_archive_manifest_then_match_with_it(spark: SparkSession, pipeline_lake: PipelineLake,
                                                             tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(pipeline_lake.cfg.lake_root, lake)
    manifest = _archive_manifest(tmp_path / "labelled")
    own = tmp_path / "own_calibration.json"
    sets = ["--set", f"lake.root={lake}", "--set", f"match.calibration_path={own}"]
    code = calibrate.main(["--env", "test", *sets, "--manifest", str(manifest), "--run-id", "t-cal-archive"],
                          spark=spark)
    assert code == 0
    cfg = pipeline_lake.cfg.with_overrides([f"lake.root={lake}", f"match.calibration_path={own}",
                                            "audit.purpose=application_screening"])
    cal = load_calibration(cfg, recogniser_id(cfg))
    assert cal.fpir_model is not None and "labelled" in cal.source and "relabelled by fixes none" in cal.source
    with manifest.open() as fh:
        photos = sum(1 for _ in fh) - 1
    assert cal.fpir_model.searches == photos  # every labelled photo searched the others
    audit = read_table(spark, cfg, "audit").filter(F.col("run_id") == "t-cal-archive").first()
    detail = json.loads(audit["detail"])
    assert detail["manifest"] == str(manifest) and detail["fpir_floor"] == cal.fpir_floor

    res = match.run(spark, cfg, run_id="t-match-own-cal")
    m_audit = json.loads(read_table(spark, cfg, "audit").filter(F.col("run_id") == "t-match-own-cal")
                         .first()["detail"])
    n = m_audit["gallery_size"]
    assert m_audit["calibration"] == cal.version
    for band, level in cfg.match.bands.items():
        assert m_audit["band_thresholds"][band] == pytest.approx(cal.score_at_fpir(level, n))
    # About 300 searches measure FPIR down to about 0.03: the strong band (0.003) lies below, and the run says so.
    assert cal.fpir_floor is not None and cal.fpir_floor > 0.003
    assert m_audit["fpir_model"]["levels_below_measured"] == ["strong"]
    rows = read_table(spark, cfg, "matches").filter(F.col("run_id") == "t-match-own-cal").collect()
    assert res.candidates == len(rows) > 0
    assert all(r["est_fpir"] >= cal.fpir_floor * (1 - 1e-9) for r in rows)  # never more precise than measured
    truth = pipeline_lake.truth
    rank1 = {r["probe_record_id"]: r for r in rows if r["rank"] == 1}
    mated = [rid for rid, t in truth.items() if t["kind"] == "mated_probe"]
    hits = [rid for rid in mated if rid in rank1
            and truth[rank1[rid]["candidate_record_id"]]["identity"] == truth[rid]["identity"]]
    assert len(hits) >= 0.6 * len(mated), (len(hits), len(mated))


def test_calibrate_refuses_a_manifest_without_identities(spark: SparkSession, tmp_path: Path) -> None:
    bad = tmp_path / "no_identity.csv"
    bad.write_text("record_id,path\nr1,/nowhere.jpg\n")
    code = calibrate.main(["--env", "test", "--set", f"lake.root={tmp_path / 'lake'}", "--manifest", str(bad)],
                          spark=spark)
    assert code == 4
