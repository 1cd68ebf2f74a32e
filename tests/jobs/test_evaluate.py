"""The evaluation: protocol functions on constructed cases with known answers, and the job end to end on
real photos (Yale A with its lighting/expression conditions as groups; a small LFW 1:N archive)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyspark.sql import SparkSession

from facelink.config import Config, load_config
from facelink.evaluation.embeddings import EmbeddingStore, Variant, passes_for
from facelink.evaluation.protocols import (
    BootstrapSpec,
    dedup_metrics,
    false_candidates,
    gallery_nonmate_tops,
    identification_metrics,
    search_outcomes,
)
from facelink.evaluation.settings import EvaluationSettings
from facelink.evaluation.techniques import (
    Records,
    ScoringConf,
    cohort_stats_input,
    evaluation_configs,
    normalise,
    record_scores,
    searched_weights,
)
from jobs import evaluate
from tests.paths import DATA_DIR, LFW_DIR

BOOT = BootstrapSpec(n_boot=200, seed=0)
EVAL_AUDIT = ["audit.operator=test-evaluator", "audit.purpose=evaluation", "audit.authority=EVAL-PLAN-1"]
YALE_GROUPS = r"_([a-z]+)\.png$"


# --------------------------------------------------------------------------------------------- known answers


def test_search_outcomes_ranks_and_fnir_on_a_constructed_case() -> None:
    nan = np.nan
    scores = np.array([
        [0.90, 0.10, 0.20, 0.30],   # mated (record 0): rank 1
        [0.50, 0.60, 0.70, 0.10],   # mated (record 1): rank 2 behind 0.70
        [nan, nan, nan, nan],       # mated, no face: a miss at every threshold
        [0.40, 0.20, 0.10, 0.00],   # non-mated, top 0.40
        [0.55, 0.20, 0.10, 0.00],   # non-mated, top 0.55
    ])
    outcome = search_outcomes(scores, [[0], [1], [2], [], []])
    assert outcome.mate_ranks.tolist() == [1.0, 2.0, math.inf]
    assert outcome.mate_scores[:2].tolist() == [0.9, 0.6] and math.isnan(outcome.mate_scores[2])
    assert outcome.nonmate_top.tolist() == [0.4, 0.55]

    # FPIR 0.5 allows one of two non-mated probes: the threshold sits just above 0.40.
    deep = identification_metrics(outcome, (0.5,), (1, 10), k=10, boot=BOOT)
    got = deep["fnir_at_fpir"][0.5]
    assert 0.4 < got["threshold"] < 0.41 and got["fpir"] == 0.5
    assert got["fnir"] == pytest.approx(1 / 3) and got["ci"][0] <= got["fnir"] <= got["ci"][1]
    assert deep["rank_miss"][1]["value"] == pytest.approx(2 / 3)
    assert deep["rank_miss"][10]["value"] == pytest.approx(1 / 3)
    # With a one-candidate list the rank-2 mate is not returned.
    assert identification_metrics(outcome, (0.5,), (1,), k=1, boot=BOOT)["fnir_at_fpir"][0.5]["fnir"] == \
        pytest.approx(2 / 3)


def test_gallery_leave_one_out_searches_are_the_records_without_a_mate() -> None:
    nan = np.nan
    gallery = np.array([
        [nan, 0.90, 0.30, 0.20],   # identity 7, with a mate (record 1): not a non-mated search
        [0.90, nan, 0.10, 0.40],   # identity 7
        [0.30, 0.10, nan, 0.60],   # identity 8, alone: top 0.60
        [0.20, 0.40, 0.60, nan],   # identity 9, alone: top 0.60
    ])
    tops = gallery_nonmate_tops(gallery, np.array([7, 7, 8, 9]))
    assert tops.tolist() == [0.6, 0.6]
    assert gallery_nonmate_tops(gallery[:2, :2], np.array([7, 7])).size == 0


def test_dedup_recall_and_false_candidates_on_a_constructed_gallery() -> None:
    nan = np.nan
    gallery = np.array([
        [nan, 0.80, 0.30, 0.10],
        [0.80, nan, 0.20, 0.60],
        [0.30, 0.20, nan, 0.70],
        [0.10, 0.60, 0.70, nan],
    ])
    pairs = np.array([[0, 1], [2, 3]])  # (2, 3) is no real duplicate pair: used to test the rank rule
    low = dedup_metrics(gallery, pairs, np.array([0.50, 0.65]), (0.5,), k=1, boot=BOOT)["recall_at_fpir"][0.5]
    assert 0.5 < low["threshold"] < 0.51 and low["found"] == 2 and low["recall"] == 1.0
    high = dedup_metrics(gallery, pairs, np.array([0.75, 0.90]), (0.5,), k=1, boot=BOOT)["recall_at_fpir"][0.5]
    assert high["found"] == 1, "only the 0.80 pair clears a threshold above 0.75"
    # Record 1 searching finds 0 first (0.80 > 0.60): with k=1 the pair (1, 3) is not returned from 1's side,
    # but 3 searching finds 2 (0.70) first too, so a pair (1, 3) would be missed at k=1 and found at k=2.
    one = dedup_metrics(gallery, np.array([[1, 3]]), np.array([0.1, 0.2]), (0.5,), k=1, boot=BOOT)
    two = dedup_metrics(gallery, np.array([[1, 3]]), np.array([0.1, 0.2]), (0.5,), k=2, boot=BOOT)
    assert one["recall_at_fpir"][0.5]["found"] == 0 and two["recall_at_fpir"][0.5]["found"] == 1

    count, top = false_candidates(gallery, np.array([0, 0, 1, 2]), threshold=0.65, top=2)
    assert count == 1
    assert [(a, b) for a, b, _ in top] == [(2, 3), (1, 3)] and top[0][2] == pytest.approx(0.7)


def test_record_templates_on_known_vectors() -> None:
    x = np.array([[1, 0], [0, 1], [1, 0], [np.nan, np.nan]], dtype=np.float32)
    gallery = Records(["A", "E"], [[0, 1], [3]])  # A: recent photo 0 then photo 1; E: no face
    probe = Records(["Q"], [[2]])
    ones = np.array([1.0, 1.0, 1.0, 0.0])
    expected = {"single": 1.0, "embedding_mean": 1 / math.sqrt(2), "score_max": 1.0, "score_mean": 0.5}
    for rule, want in expected.items():
        s = record_scores(probe, gallery, x, ones, rule)  # type: ignore[arg-type]
        assert s[0, 0] == pytest.approx(want), rule
        assert math.isnan(s[0, 1]), f"{rule}: a record without a face has no score"
    weighted = np.array([1.0, 0.25, 1.0, 0.0])  # photo 1 fails the quality rule
    assert record_scores(probe, gallery, x, weighted, "score_mean")[0, 0] == pytest.approx(0.8)
    assert record_scores(probe, gallery, x, weighted, "embedding_mean")[0, 0] == pytest.approx(1 / math.sqrt(1.0625))


def test_production_scoring_searches_only_quality_passing_gallery_faces() -> None:
    """The default's gallery filter (as production's searchable faces): a searched photo failing the quality rule
    is not searched, a searching one still searches; a record left without a searchable photo is not found."""
    x = np.array([[1, 0], [0.6, 0.8], [1, 0], [0, 1]], dtype=np.float32)
    v = Variant("m", False, 480)
    ok = np.array([False, True, False, True])
    store = EmbeddingStore(["g0", "g1", "q0", "q1"], vectors={v: x}, quality_ok={480: ok})
    gallery = Records(["A", "B"], [[0], [1]])
    probes = Records(["P", "Q"], [[2], [3]])
    filtered = ScoringConf(template="score_max", quality_weighting=False, cohort_norm="none",
                           gallery_quality_filter=True)
    w = searched_weights(store, v, filtered, gallery)
    assert w.tolist() == [0.0, 1.0, 1.0, 1.0], "the probe photo 2 fails the rule too but it searches"
    s = record_scores(probes, gallery, x, w, "score_max")
    assert math.isnan(s[0, 0]) and s[0, 1] == pytest.approx(0.6) and s[1, 1] == pytest.approx(0.8)
    unfiltered = searched_weights(store, v, ScoringConf(template="score_max", cohort_norm="none",
                                                        quality_weighting=False), gallery)
    assert record_scores(probes, gallery, x, unfiltered, "score_max")[0, 0] == pytest.approx(1.0)


def test_a_pass_embeds_the_mirror_only_for_recognisers_with_a_flip_variant() -> None:
    variants = [Variant("mobilefacenet_128d", True, 480), Variant("sface_128d", False, 480),
                Variant("mobilefacenet_128d", False, 320)]
    assert passes_for(variants) == {480: (["mobilefacenet_128d", "sface_128d"], ["mobilefacenet_128d"]),
                                    320: (["mobilefacenet_128d"], [])}
    both = passes_for([*variants, Variant("sface_128d", True, 480)])
    assert both[480][1] == ["mobilefacenet_128d", "sface_128d"]


def test_sface_mix_configurations_and_the_default(tmp_path: Path) -> None:
    cfg = load_config("test", [f"lake.root={tmp_path}"])
    names = ["sface_mix", "default", "default_all_faces", "default_quality_only"]
    configs = {c.name: c for c in evaluation_configs(cfg, names, ())}
    labels = {name: [v.label for v in c.variants] for name, c in configs.items()}
    assert labels["mfn_flip"] == ["mobilefacenet_128d+flip@480"]
    assert labels["sface"] == ["sface_128d@480"] and labels["sface_flip"] == ["sface_128d+flip@480"]
    assert labels["mfn_sface_flip"] == ["mobilefacenet_128d+flip@480", "sface_128d+flip@480"]
    assert labels["default"] == ["mobilefacenet_128d+flip@480", "sface_128d@480"]
    assert "mfn_flip_sface" not in configs, "the mix that is the default is measured once, as the default"
    # production searches every gallery face (index.gallery_quality: flag): default and mfn_flip too; the
    # other rule is measured beside them, and the rule production uses is not measured twice
    assert cfg.index.gallery_quality == "flag"
    assert not configs["default"].scoring.gallery_quality_filter
    assert not configs["mfn_flip"].scoring.gallery_quality_filter
    assert "default_all_faces" not in configs and "mfn_flip_all_faces" not in configs
    assert configs["default_quality_only"].scoring.gallery_quality_filter
    assert labels["default_quality_only"] == labels["default"]
    assert labels["mfn_flip_quality_only"] == labels["mfn_flip"]
    assert configs["mfn_flip_quality_only"].scoring.gallery_quality_filter
    assert configs["mfn_sface_flip"].scoring.fusion_weights == configs["default"].scoring.fusion_weights
    excluding = {c.name: c for c in evaluation_configs(cfg.with_overrides(["index.gallery_quality=exclude"]),
                                                       names, ())}
    assert excluding["default"].scoring.gallery_quality_filter and excluding["mfn_flip"].scoring.gallery_quality_filter
    assert not excluding["default_all_faces"].scoring.gallery_quality_filter
    assert not excluding["mfn_flip_all_faces"].scoring.gallery_quality_filter
    assert "default_quality_only" not in excluding and "mfn_flip_quality_only" not in excluding
    other = {c.name: c for c in evaluation_configs(cfg.with_overrides(["models.recogniser=mobilefacenet_128d"]),
                                                   ["sface_mix"], ())}
    assert [v.label for v in other["mfn_flip_sface"].variants] == labels["default"]
    assert "mfn_flip" not in other, "with MobileFaceNet as the default, mfn_flip is the default row"
    assert "mfn_flip_quality_only" not in other, "and mfn_flip_quality_only is default_quality_only"


def test_cohort_normalisation_excludes_the_best_scores() -> None:
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, np.nan]])
    cohort = cohort_stats_input(scores, exclude_top=1, size=2)
    assert cohort.tolist() == [[4.0, 3.0]]
    z = normalise(scores, cohort, None, "probe")
    assert z[0, 0] == pytest.approx((5.0 - 3.5) / 0.5) and math.isnan(z[0, 5])
    both = normalise(np.array([[2.0]]), np.array([[1.0, 0.0]]), np.array([[3.0, 1.0]]), "symmetric")
    assert both[0, 0] == pytest.approx(0.5 * ((2.0 - 0.5) / 0.5 + (2.0 - 2.0) / 1.0))


# --------------------------------------------------------------------------------------------- the job


def _rows(spark: SparkSession, cfg: Config, run_id: str) -> list[dict[str, Any]]:
    table = spark.read.format("delta").load(cfg.table_path("evaluations")).filter(f"run_id = '{run_id}'")
    return [r.asDict() for r in table.collect()]


@pytest.fixture(scope="module")
def yale_runs(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, list[Any]]:
    """The job twice on Yale A (conditions as groups), in one lake."""
    cfg = load_config("test", [f"lake.root={tmp_path_factory.mktemp('evallake')}", *EVAL_AUDIT])
    settings = EvaluationSettings(configs=("reference", "flip_tta", "fusion", "cohort_norm"), n_boot=200,
                                  timing_photos=6, calibration_fmr_targets=(0.01,))
    manifest = str(DATA_DIR / "yale_a" / "manifest.csv")
    runs = [evaluate.run(spark, cfg, manifest, group_pattern=YALE_GROUPS, run_id=f"eval-yale-{i}", settings=settings)
            for i in (1, 2)]
    return cfg, runs


def test_evaluate_job_writes_figures_groups_and_report(spark: SparkSession,
                                                       yale_runs: tuple[Config, list[Any]]) -> None:
    cfg, runs = yale_runs
    rows = _rows(spark, cfg, runs[0].run_id)
    assert len(rows) == runs[0].rows
    by = {(r["protocol"], r["config_name"], r["metric"], r["group_name"]): r for r in rows}
    for config in ("reference", "flip_tta", "fusion", "cohort_norm"):
        for metric in ("accuracy", "tar_at_far_1e-2", "tar_at_far_1e-3"):
            assert ("verification", config, metric, "all") in by, (config, metric)
        assert ("cost", config, "total_ms_per_photo", "all") in by
        assert ("calibration", config, "fmr_ratio_worst_at_1e-2", "all") in by
    ref = by[("verification", "reference", "accuracy", "all")]
    assert ref["value"] > 0.9 and ref["ci_low"] <= ref["value"] <= ref["ci_high"] and ref["n"] > 1000
    assert ref["model_id"].startswith("mobilefacenet_128d@") and len(ref["data_digest"]) == 64
    assert by[("verification", "fusion", "accuracy", "all")]["model_id"].startswith("fuse:mobilefacenet_128d@")
    # Row model ids name the extraction as production's model_id does: the reference at 320 adds nothing.
    assert by[("verification", "flip_tta", "accuracy", "all")]["model_id"] == ref["model_id"] + "+flip"
    tar = by[("verification", "reference", "tar_at_far_1e-2", "all")]
    assert tar["threshold"] is not None and 0 < tar["value"] <= 1

    conditions = {"centerlight", "glasses", "happy", "leftlight", "noglasses", "normal", "rightlight", "sad",
                  "sleepy", "surprised", "wink"}
    fnmr = {g: r["value"] for (p, c, m, g), r in by.items() if c == "reference" and m == "fnmr"}
    assert set(fnmr) == conditions
    ratio = by[("verification", "reference", "fnmr_worst_best_ratio", "all")]["value"]
    assert ratio is None or ratio >= 1.0
    side_lit = max(fnmr["leftlight"], fnmr["rightlight"])
    assert side_lit >= fnmr["normal"], "side lighting is the hardest Yale A condition"

    report_dir = Path(runs[0].report_dir)
    report = json.loads((report_dir / "report.json").read_text())
    assert report["faces_check"][0]["max_abs_diff"] < 1e-3 and report["faces_check"][0]["compared"] > 100
    assert report["digests"]["verification"] == ref["data_digest"]
    assert (report_dir / "verification_det.png").stat().st_size > 1000
    assert (report_dir / "verification_roc.png").is_file()
    assert "1:1 verification" in (report_dir / "summary.md").read_text()


def test_evaluate_job_is_reproducible(spark: SparkSession, yale_runs: tuple[Config, list[Any]]) -> None:
    cfg, runs = yale_runs

    def figures(run_id: str) -> dict[tuple[str, ...], tuple[Any, ...]]:
        return {(r["protocol"], r["config_name"], r["metric"], r["group_name"]):
                (r["value"], r["ci_low"], r["ci_high"], r["threshold"], r["n"], r["data_digest"], r["model_id"])
                for r in _rows(spark, cfg, run_id) if r["protocol"] != "cost"}

    first, second = figures(runs[0].run_id), figures(runs[1].run_id)
    assert first and first == second


def _tiny_lfw(root: Path) -> Path:
    """A small labelled set from lfw_dev: 14 people with several photos (at most 3) and 12 with one."""
    by_person: dict[str, list[str]] = defaultdict(list)
    with (LFW_DIR / "manifest.csv").open() as fh:
        for row in csv.DictReader(fh):
            by_person[row["identity"]].append(row["path"])
    multi = sorted(p for p, v in by_person.items() if len(v) >= 3)[:14]
    single = sorted(p for p, v in by_person.items() if len(v) == 1)[:12]
    rows = []
    for person in multi + single:
        for rel in sorted(by_person[person])[:3]:
            (root / person).mkdir(parents=True, exist_ok=True)
            shutil.copy(LFW_DIR / rel, root / rel)
            rows.append({"path": rel, "identity": person})
    with (root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["path", "identity"])
        writer.writeheader()
        writer.writerows(rows)
    return root / "manifest.csv"


def test_evaluate_job_1n_protocol_on_a_small_archive(spark: SparkSession, cfg: Config, tmp_path: Path) -> None:
    manifest = _tiny_lfw(tmp_path / "tiny_lfw")
    settings = EvaluationSettings(configs=("reference", "templates", "fusion"), n_boot=100, timing_photos=0,
                                  calibration_fmr_targets=(), gallery_sizes=(20,))
    cfg = cfg.with_overrides(EVAL_AUDIT)
    res = evaluate.run(spark, cfg, str(manifest), sample="4,4,3,4,-1", run_id="eval-tiny", settings=settings)
    rows = _rows(spark, cfg, res.run_id)
    by = {(r["protocol"], r["config_name"], r["metric"], r["group_name"]): r for r in rows}
    for config in ("reference", "templates", "fusion"):
        for metric in ("fnir_at_fpir_0.01", "fnir_at_fpir_0.003", "rank1_miss", "rank10_miss"):
            r = by[("identification", config, metric, "all")]
            assert r["n"] == 4 and 0 <= r["value"] <= 1 and r["ci_low"] <= r["value"] <= r["ci_high"]
        dup = by[("dedup", config, "dup_recall_at_fpir_0.01", "all")]
        assert dup["n"] == 4 and dup["threshold"] is not None
        assert by[("identification", config, "renewal_fnir_at_fpir_0.01", "all")]["n"] >= 1
        assert by[("identification", config, "fpir_observed_at_0.01", "all")]["value"] <= 0.01
    assert by[("identification", "reference", "rank10_miss", "all")]["value"] <= 0.25
    assert ("identification", "reference", "fnir_at_fpir_0.01@gallery_20", "all") in by
    digests = {r["data_digest"] for r in rows if r["protocol"] in ("identification", "dedup")}
    assert len(digests) == 1
    report = json.loads((Path(res.report_dir) / "report.json").read_text())
    assert report["protocols"]["search_counts"]["planted_duplicate_pairs"] == 4
    assert (Path(res.report_dir) / "identification_det.png").is_file()
    assert list((Path(res.report_dir) / "false_candidates" / "reference").glob("*.png"))


def test_evaluation_is_accountable_and_refuses_a_production_gallery(spark: SparkSession, cfg: Config,
                                                                    tmp_path: Path) -> None:
    """Without operator, purpose ``evaluation`` and authority the job is refused; in a lake whose gallery
    holds photos that no evaluation ingested it is refused too (audited, nothing written) unless told."""
    from facelink.errors import RefusedError
    from facelink.lake.tables import read_table
    from jobs import ingest

    manifest = str(DATA_DIR / "yale_a" / "manifest.csv")
    with pytest.raises(RefusedError, match=r"audit\.operator"):
        evaluate.run(spark, cfg, manifest, run_id="eval-unaccountable")
    with pytest.raises(RefusedError, match=r"audit\.purpose"):
        evaluate.run(spark, cfg.with_overrides([*EVAL_AUDIT, "audit.purpose=application_screening"]), manifest,
                     run_id="eval-wrong-purpose")
    production = tmp_path / "production.csv"
    production.write_text("record_id,path\nR1,%s\n" % (LFW_DIR / "AJ_Cook" / "AJ_Cook_0001.jpg"))
    ingest.run(spark, cfg, str(production), "gallery", "ingest-production-1")
    accountable = cfg.with_overrides(EVAL_AUDIT)
    with pytest.raises(RefusedError, match="1 gallery photos that no evaluation ingested"):
        evaluate.run(spark, accountable, manifest, run_id="eval-on-production")
    audit = {r["run_id"]: r for r in read_table(spark, cfg, "audit").collect()}
    refused = audit["eval-on-production"]
    assert (refused["outcome"], refused["operator"], refused["purpose"], refused["authority"]) == (
        "refused", "test-evaluator", "evaluation", "EVAL-PLAN-1")
    assert audit["eval-unaccountable"]["outcome"] == "refused"
    assert read_table(spark, cfg, "photos").count() == 1, "a refused evaluation ingests nothing"
    assert not (Path(cfg.lake_root) / "reports" / "evaluation" / "eval-on-production").exists()
    assert evaluate.production_gallery_rows(spark, cfg) == 1
