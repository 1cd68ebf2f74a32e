"""The closing summary of a night's run: counts per stage, candidates against the sample's ground truth,
data-quality outcomes, and where the report and the tables are.

Ground truth exists only for the sample archive (``truth.csv`` of :mod:`facelink.sample`); the figures it
gives say how well the candidate lists served a reviewer on data whose answers are known. They are not
identifications: every candidate still goes to human review.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from functools import reduce
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.lake.fs import lake_fs, lake_uri
from facelink.lake.tables import read_table, table_exists


def read_truth(path: Path) -> dict[str, dict[str, str]]:
    """``truth.csv`` by record id: role, identity and kind (single, renewal, planted_duplicate, ...)."""
    with path.open() as fh:
        return {row["record_id"]: row for row in csv.DictReader(fh)}


def planted_pairs(truth: Mapping[str, Mapping[str, str]]) -> set[frozenset[str]]:
    """Pairs of gallery record ids that the sample enrolled for one person (the planted duplicates)."""
    by_identity: dict[str, list[str]] = {}
    for rid, row in truth.items():
        if row["role"] == "gallery":
            by_identity.setdefault(row["identity"], []).append(rid)
    return {frozenset((a, b)) for rids in by_identity.values() for a in rids for b in rids if a < b}


def duplicate_summary(pairs: Sequence[tuple[str, str, str]], truth: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """Candidate pairs ``(record_a, record_b, band)`` against the planted duplicates, per band and overall."""
    planted = planted_pairs(truth)
    out: dict[str, Any] = {"planted": len(planted), "candidate_pairs": len(pairs)}
    for band in ("strong", "possible", None):
        found = {frozenset((a, b)) for a, b, bd in pairs if band is None or bd == band}
        name = band or "any_band"
        out[name] = {"found": len(found & planted), "other_pairs": len(found - planted),
                     "recall": round(len(found & planted) / len(planted), 3) if planted else None}
    return out


def probe_summary(rank1: Mapping[str, tuple[str, str]], truth: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """Rank-1 candidates ``probe_record -> (candidate_record, band)`` against the probes' ground truth."""
    mated = [r for r, t in truth.items() if t["kind"] == "mated_probe"]
    unmated = [r for r, t in truth.items() if t["kind"] == "unmated_probe"]

    def same_person(probe: str) -> bool:
        cand = rank1.get(probe)
        return cand is not None and truth.get(cand[0], {}).get("identity") == truth[probe]["identity"]

    hits = [r for r in mated if same_person(r)]
    strong_unmated = [r for r in unmated if r in rank1 and rank1[r][1] == "strong"]
    return {
        "mated_probes": len(mated), "mated_found_at_rank1": len(hits),
        "mated_rank1_rate": round(len(hits) / len(mated), 3) if mated else None,
        "unmated_probes": len(unmated), "unmated_with_strong_candidate": len(strong_unmated),
        "unmated_strong_rate": round(len(strong_unmated) / len(unmated), 3) if unmated else None,
    }


def flagged_counts(candidates: DataFrame, quality_cols: Sequence[str]) -> dict[str, int]:
    """Candidate rows per band in which a face fails the quality rule (any of ``quality_cols`` false): with
    ``index.gallery_quality: flag`` such faces are searched, and the reviewer is told."""
    fails = reduce(lambda a, b: a | b, [~F.col(c) for c in quality_cols])
    rows = candidates.filter(fails).groupBy("band").count().collect()
    return {str(r["band"]): int(r["count"]) for r in rows}


def summarise(spark: SparkSession, cfg: Config, run_ids: Mapping[str, str], truth_path: Path | None) -> dict[str, Any]:
    """Everything the demo prints at the end, read back from the lake's Delta tables.

    Args:
        run_ids: step task id -> run id of this night.
        truth_path: the sample's ``truth.csv``; ``None`` leaves out the ground-truth figures.
    """
    runs = read_table(spark, cfg, "runs").filter(F.col("run_id").isin(list(run_ids.values())))
    latest: dict[str, Any] = {}
    for row in runs.orderBy("ended_at").collect():  # a rerun of the night keeps its newest record
        latest[row["run_id"]] = row
    stages = []
    for task, rid in run_ids.items():
        rec = latest.get(rid)
        stages.append({"step": task, "status": rec["status"] if rec else "not run",
                       "counts": dict(rec["counts"] or {}) if rec else {}})
    out: dict[str, Any] = {"lake": cfg.lake_root, "stages": stages}

    quality_ids = [rid for task, rid in run_ids.items() if task.startswith("quality")]
    if table_exists(spark, cfg, "dq_results"):
        dq = read_table(spark, cfg, "dq_results").filter(F.col("run_id").isin(quality_ids))
        agg = dq.groupBy("severity").agg(F.count("*").alias("n"), F.sum(F.when(F.col("success"), 1).otherwise(0))
                                         .alias("passed")).collect()
        out["quality"] = {r["severity"]: {"expectations": int(r["n"]), "passed": int(r["passed"])} for r in agg}
        out["data_docs"] = lake_uri(cfg, "dq_docs")

    truth = read_truth(truth_path) if truth_path and truth_path.is_file() else None
    if truth is not None and table_exists(spark, cfg, "duplicate_candidates"):
        pairs = [(r["record_id_a"], r["record_id_b"], r["band"]) for r in
                 read_table(spark, cfg, "duplicate_candidates").select("record_id_a", "record_id_b", "band").collect()]
        out["duplicates"] = duplicate_summary(pairs, truth)
    match_id = run_ids.get("match")
    flagged: dict[str, dict[str, int]] = {}
    if table_exists(spark, cfg, "duplicate_candidates"):
        flagged["duplicates"] = flagged_counts(read_table(spark, cfg, "duplicate_candidates"),
                                               ["quality_ok_a", "quality_ok_b"])
    if match_id and table_exists(spark, cfg, "matches"):
        flagged["matches"] = flagged_counts(read_table(spark, cfg, "matches").filter(F.col("run_id") == match_id),
                                            ["probe_quality_ok", "candidate_quality_ok"])
    out["flagged_quality"] = flagged
    if truth is not None and match_id and table_exists(spark, cfg, "matches"):
        rows = read_table(spark, cfg, "matches").filter((F.col("run_id") == match_id) & (F.col("rank") == 1)) \
            .select("probe_record_id", "candidate_record_id", "band").collect()
        out["probes"] = probe_summary({r["probe_record_id"]: (r["candidate_record_id"], r["band"]) for r in rows},
                                      truth)
    report_id = run_ids.get("report")
    if report_id:
        out["report"] = lake_uri(cfg, "reports", report_id, "index.html")
    return out


def write_summary(cfg: Config, summary: Mapping[str, Any], run_date: str) -> str:
    """Store the night's summary as ``<lake>/reports/nightly-<run_date>.json`` (through the lake's filesystem
    seam); return where."""
    out = lake_uri(cfg, "reports", f"nightly-{run_date}.json")
    lake_fs(cfg).write_text(out, json.dumps(summary, indent=1, default=str))
    return out


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as a few readable lines for the end of ``make demo``."""
    lines = ["", "facelink nightly summary (candidates for human review, not identifications)"]
    for st in summary["stages"]:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(st["counts"].items()))
        lines.append(f"  {st['step']:<16} {st['status']:<10} {counts}")
    for severity, q in sorted(summary.get("quality", {}).items()):
        lines.append(f"  data quality ({severity}): {q['passed']}/{q['expectations']} expectations passed")
    dup = summary.get("duplicates")
    if dup:
        lines.append(f"  planted duplicate enrolments: {dup['planted']}; candidate pairs: {dup['candidate_pairs']}")
        for band in ("strong", "possible", "any_band"):
            d = dup[band]
            lines.append(f"    {band:<9} found {d['found']}/{dup['planted']} (recall {d['recall']}), "
                         f"other pairs {d['other_pairs']}")
    pr = summary.get("probes")
    if pr:
        lines.append(f"  mated probes with their person at rank 1: {pr['mated_found_at_rank1']}/{pr['mated_probes']}"
                     f" ({pr['mated_rank1_rate']})")
        lines.append(f"  unmated probes with a strong candidate: {pr['unmated_with_strong_candidate']}/"
                     f"{pr['unmated_probes']} ({pr['unmated_strong_rate']})")
    flagged = summary.get("flagged_quality") or {}
    if flagged:
        parts = [f"{kind} " + (", ".join(f"{b} {n}" for b, n in sorted(per_band.items())) or "none")
                 for kind, per_band in sorted(flagged.items())]
        lines.append("  candidates with a face failing the quality rule (flagged for the reviewer): "
                     + "; ".join(parts))
    lines.append(f"  tables: {summary['lake']}/tables/<name> (Delta; read with spark.read.format('delta'))")
    if "data_docs" in summary:
        lines.append(f"  data docs: {summary['data_docs']}")
    if "report" in summary:
        lines.append(f"  report: {summary['report']}")
    return "\n".join(lines)
