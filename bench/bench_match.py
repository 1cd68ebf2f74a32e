"""Matching at scale: probes against a synthetic gallery, and gallery de-duplication, through the Spark jobs.

A synthetic gallery (``--gallery`` faces, most people enrolled once, some two or three times, each photo
its own record) and probes (``--probes``, half new photos of gallery people, half strangers) come from
``facelink.index.synthetic``. They are written straight into the ``faces`` table, with the ``photos`` rows
the jobs read (``jobs.match`` takes its probes from ``photos``; ``jobs.dedup`` clusters only records still
in ``photos``), through Parquet files and one Delta append per table. A calibration is fitted on separate
synthetic mate / non-mate scores and saved where the jobs look for it, so no LFW calibration run is needed.

Then ``jobs.build_index.run(full=True)``, ``jobs.match.run`` and ``jobs.dedup.run(full=True)`` are timed,
with the RSS of the driver Python, its JVM and the Python workers sampled (``bench.sampling``). recall@10
against exact search: for a seeded sample of probes (and of gallery faces for dedup), the exact top-10
(``faiss.IndexFlatIP`` over all gallery vectors) at or above the run's ``threshold_score`` is compared with
the rows the job stored. The 1:N sanity check counts mated probes whose rank-1 candidate is their own
identity, and strangers with any candidate; from those counts, ``fpir_check`` reports the observed FPIR at
each band of ``match.bands`` (strangers with a candidate in that band or a stricter one) against its target,
with Wilson 95% intervals.

The synthetic calibration carries an FPIR model (``facelink.search.fpir``) measured on searches among 40,000
synthetic faces of people in no gallery, so the 1M thresholds are extrapolated from galleries of up to
40,000 faces, as an archive's are from its calibration data. ``--fpir-only`` checks just that, without Spark:
the non-mated probes' exact top scores against the whole synthetic gallery (FAISS flat) are compared with
the band thresholds for its size; results go to ``bench/results/fpir.json``.

Targets on the 2-core development machine (at 1M gallery / 10k probes): match within 2 minutes, the 1M
de-duplication within 15 minutes. Results go to ``bench/results/match.json``: one entry per
(gallery, probes) size, a rerun replacing the entry of its size.

Usage: ``python -m bench.bench_match [--gallery 1000000] [--probes 10000]``; quick: ``--gallery 50000 --probes 1000``;
FPIR only (no Spark, a few minutes at 1M): ``python -m bench.bench_match --fpir-only``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.bench_index import PHOTO_PMF
from bench.sampling import MemoryPeaks, TreeSampler, machine_info
from facelink.config import Config, load_config
from facelink.index.synthetic import EmbeddingStats, generate_gallery, generate_probes, reference_stats
from facelink.search.calibration import calibration_path, fit_calibration
from facelink.search.fpir import format_check_rows, measure_fpir_model, wilson_interval

log = logging.getLogger("bench_match")

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = REPO_ROOT / "bench" / "results" / "match.json"
FPIR_RESULTS_PATH = REPO_ROOT / "bench" / "results" / "fpir.json"
#: Synthetic searches the FPIR model is measured on (each against galleries of up to 40,000 faces); 10,000 put
#: about 30 searches above the strong band (0.003) at each size.
FPIR_PROBES = 10_000
FPIR_REPEATS = 2
SEED = 0
PROBE_SEED = 5
CALIBRATION_SEED = 17
CALIBRATION_IDENTITIES = 20_000
NONMATE_BLOCK = 2_000
#: Queries whose stored candidates are checked against exact search: with 500, a recall near 0.99 rests on about
#: 400 pairs and its 95% interval spans 0.97-0.995, too wide to say whether 0.99 is reached.
EVAL_SAMPLE = 2_000
K = 10
TARGET_SIZES = (1_000_000, 10_000)
TARGET_MATCH_S = 120.0
TARGET_DEDUP_S = 900.0
SCORE_TOL = 1e-5
CHUNK_ROWS = 100_000
T = TypeVar("T")


class Synthetic:
    """The gallery ``xb`` [N, d] with identity ``labels``, and probes ``xq`` with labels and ``mated`` flags."""

    def __init__(self, stats: EmbeddingStats, gallery: int, probes: int) -> None:
        self.n_identities = int(gallery / np.dot(np.arange(1, len(PHOTO_PMF) + 1), PHOTO_PMF) * 1.02)
        xb, labels = generate_gallery(stats, self.n_identities, PHOTO_PMF, seed=SEED)
        self.xb, self.labels = np.ascontiguousarray(xb[:gallery]), labels[:gallery]
        half = probes // 2
        self.xq, self.probe_labels, self.mated = generate_probes(
            stats, self.n_identities, half, probes - half, SEED, PROBE_SEED
        )
        # Mated probes of identities cut off by the truncation have no mate left: count them as strangers.
        self.mated &= self.probe_labels <= self.labels[-1]


def gallery_record(pos: np.ndarray | int) -> Any:
    """Record id of gallery face ``pos`` (every gallery photo is its own record)."""
    return np.char.mod("g%07d", pos) if isinstance(pos, np.ndarray) else f"g{pos:07d}"


def probe_record(pos: np.ndarray | int) -> Any:
    """Record id of probe ``pos``."""
    return np.char.mod("p%06d", pos) if isinstance(pos, np.ndarray) else f"p{pos:06d}"


def write_parquet(vectors: np.ndarray, labels: np.ndarray, folder: Path) -> Path:
    """``pos, label, embedding`` Parquet files of ``vectors`` (chunked row groups, list<float> embeddings)."""
    folder.mkdir(parents=True, exist_ok=True)
    dim = vectors.shape[1]
    for i, start in enumerate(range(0, vectors.shape[0], CHUNK_ROWS)):
        part = vectors[start : start + CHUNK_ROWS]
        offsets = pa.array(np.arange(0, (part.shape[0] + 1) * dim, dim, dtype=np.int32))
        embedding = pa.ListArray.from_arrays(offsets, pa.array(part.reshape(-1), pa.float32()))
        table = pa.table({
            "pos": pa.array(np.arange(start, start + part.shape[0], dtype=np.int64)),
            "label": pa.array(labels[start : start + part.shape[0]].astype(np.int64)),
            "embedding": embedding,
        })
        pq.write_table(table, folder / f"part-{i:05d}.parquet")
    return folder


def write_tables(spark: Any, cfg: Config, folder: Path, role: str, model_id: str) -> int:
    """Append the Parquet rows of one role to ``faces`` and ``photos`` as schema-conformant rows."""
    from pyspark.sql import functions as F

    from facelink.ingest.photos import partition_col
    from facelink.lake.tables import append
    from schemas import get_spec

    prefix = "g%07d" if role == "gallery" else "p%06d"
    raw = spark.read.parquet(str(folder)).withColumn("record_id", F.format_string(prefix, "pos"))
    base = raw.select(
        "record_id", F.sha2(F.concat(F.lit("synthetic/"), "record_id"), 256).alias("photo_id"),
        F.lit(role).alias("role"), partition_col(cfg.ingest.partition_column, cfg.ingest.partition_buckets)
        .alias("partition"), "embedding",
    )
    null = F.lit(None)
    faces = base.select(
        "record_id", "photo_id", "role", "partition", F.lit(model_id).alias("model_id"),
        F.lit(0).alias("face_index"), F.lit("ok").alias("status"), null.alias("error"), F.lit(1).alias("n_faces"),
        F.lit(True).alias("is_primary"), null.alias("box"), null.alias("landmarks"),
        F.lit(0.99).alias("det_score"), *(null.alias(c) for c in (
            "face_width", "inter_eye_px", "sharpness", "brightness", "contrast", "roll_deg", "yaw")),
        F.lit(True).alias("quality_ok"), F.array().cast("array<string>").alias("quality_reasons"), "embedding",
        F.lit("bench-synthetic").alias("extract_run_id"), F.current_timestamp().alias("extracted_at"),
    )
    photos = base.select(
        "record_id", "photo_id", "role", "partition",
        F.concat(F.lit("synthetic://"), "record_id").alias("source_path"), F.lit(bytearray()).alias("content"),
        F.lit(0).alias("byte_length"), F.lit("synthetic").alias("format"), F.lit(112).alias("width"),
        F.lit(112).alias("height"), null.alias("metadata"), F.lit("bench-synthetic").alias("ingest_run_id"),
        F.current_timestamp().alias("ingested_at"),
    )
    append(spark, cfg, get_spec("faces"), faces)
    append(spark, cfg, get_spec("photos"), photos)
    return int(spark.read.parquet(str(folder)).count())


def fit_synthetic_calibration(stats: EmbeddingStats, model_id: str) -> Any:
    """Calibration from synthetic scores of people in no gallery: 2-photo mates, block non-mates, and the FPIR
    model measured on searches among those people's faces."""
    xb, labels = generate_gallery(stats, CALIBRATION_IDENTITIES, 2, seed=CALIBRATION_SEED)
    first, second = xb[0::2], xb[1::2]
    mates = np.einsum("ij,ij->i", first, second)
    nonmates = (first[:NONMATE_BLOCK] @ second[NONMATE_BLOCK : 2 * NONMATE_BLOCK].T).ravel()
    assert np.all(labels[0::2] == labels[1::2])
    source = (f"synthetic reference_stats(): {mates.size} mate pairs, {nonmates.size} non-mate pairs, "
              f"seed {CALIBRATION_SEED}")
    model = measure_fpir_model(xb, labels, f"{source}; {FPIR_PROBES} searches", seed=CALIBRATION_SEED,
                               repeats=FPIR_REPEATS, max_probes=FPIR_PROBES)
    return fit_calibration(nonmates.astype(np.float64), mates.astype(np.float64), model_id,
                           source).with_fpir_model(model)


def fpir_rows(bands: dict[str, float], hits: dict[str, int], searches: int, gallery: int) -> dict[str, Any]:
    """Observed against target FPIR per band: ``hits[band]`` strangers had a candidate in it (or a stricter one)."""
    rows = []
    for band, target in sorted(bands.items(), key=lambda kv: kv[1]):
        observed = hits[band] / searches if searches else float("nan")
        lo, hi = wilson_interval(hits[band], searches)
        rows.append({"band": band, "target_fpir": target, "gallery_size": gallery, "observed_fpir": observed,
                     "ci": [lo, hi], "ratio": observed / target, "ratio_ci": [lo / target, hi / target],
                     "events": hits[band], "searches": searches, "notes": []})
    ratios = [r["ratio"] for r in rows]
    return {"rows": rows, "within_2x": bool(ratios) and all(0.5 <= r <= 2.0 for r in ratios)}


def measured(label: str, fn: Callable[[], T]) -> tuple[T, dict[str, Any]]:
    """Run ``fn`` with its wall time and the job's peak memory recorded."""
    load = os.getloadavg()[0]
    peaks: MemoryPeaks
    with TreeSampler(0.1).watch() as peaks:
        t0 = time.perf_counter()
        result = fn()
        wall = time.perf_counter() - t0
    info = {"wall_s": round(wall, 2), "load_avg_1m_before": round(load, 2),
            "load_avg_1m_after": round(os.getloadavg()[0], 2), "memory": peaks.as_dict()}
    log.info("%s: %.1f s, peak %.2f GiB", label, wall, peaks.all_total / 2**30)
    return result, info


def exact_topk(xb: np.ndarray, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of ``xq`` over ``xb``."""
    index = faiss.IndexFlatIP(xb.shape[1])
    index.add(xb)
    return index.search(np.ascontiguousarray(xq, dtype=np.float32), k)


def match_recall(spark: Any, cfg: Config, syn: Synthetic, run_id: str, floor: float,
                 rng: np.random.Generator) -> dict[str, Any]:
    """recall@10 of the stored matches against exact search above the run's threshold, on sampled probes."""
    from pyspark.sql import functions as F

    from facelink.lake.tables import read_table

    sample = np.sort(rng.choice(syn.xq.shape[0], size=min(EVAL_SAMPLE, syn.xq.shape[0]), replace=False))
    scores, ids = exact_topk(syn.xb, syn.xq[sample], K)
    wanted = [str(r) for r in probe_record(sample)]
    rows = (read_table(spark, cfg, "matches").filter((F.col("run_id") == run_id)
            & F.col("probe_record_id").isin(wanted)).select("probe_record_id", "candidate_record_id").collect())
    stored: dict[str, set[str]] = {}
    for r in rows:
        stored.setdefault(r["probe_record_id"], set()).add(r["candidate_record_id"])
    expected = found = extra = 0
    for row, probe in enumerate(wanted):
        exact = {str(gallery_record(int(i))) for i, s in zip(ids[row], scores[row], strict=True)
                 if i >= 0 and s >= floor + SCORE_TOL}
        got = stored.get(probe, set())
        expected += len(exact)
        found += len(exact & got)
        extra += len(got - exact)
    return {"sampled_probes": len(wanted), "exact_hits_above_threshold": expected, "stored_of_those": found,
            "recall@10": round(found / expected, 4) if expected else None,
            "recall_ci95": recall_interval(found, expected),
            "stored_not_in_exact_top10_above_threshold": extra}


def recall_interval(found: int, expected: int) -> list[float] | None:
    """Wilson 95% interval of a recall of ``found`` out of ``expected`` pairs (None without pairs)."""
    return [round(x, 4) for x in wilson_interval(found, expected)] if expected else None


def match_sanity(spark: Any, cfg: Config, syn: Synthetic, run_id: str) -> dict[str, Any]:
    """1:N check on every probe: mated probes with their identity at rank 1; strangers with any candidate."""
    from pyspark.sql import functions as F

    from facelink.lake.tables import read_table

    top = (read_table(spark, cfg, "matches").filter((F.col("run_id") == run_id) & (F.col("rank") == 1))
           .select("probe_record_id", "candidate_record_id", "band").toPandas())
    probe_pos = top["probe_record_id"].str[1:].astype(int).to_numpy()
    cand_label = syn.labels[top["candidate_record_id"].str[1:].astype(int).to_numpy()]
    correct = (cand_label == syn.probe_labels[probe_pos]) & syn.mated[probe_pos]
    strong = (top["band"] == "strong").to_numpy()
    n_mated, n_strangers = int(syn.mated.sum()), int((~syn.mated).sum())
    strangers_hit = ~syn.mated[probe_pos]
    return {
        "mated_probes": n_mated,
        "mated_rank1_correct": int(correct.sum()),
        "mated_rank1_rate": round(float(correct.sum()) / n_mated, 4) if n_mated else None,
        "mated_rank1_correct_strong": int((correct & strong).sum()),
        "non_mated_probes": n_strangers,
        "non_mated_with_candidate": int(strangers_hit.sum()),
        "non_mated_with_strong_candidate": int((strangers_hit & strong).sum()),
    }


def match_fpir(spark: Any, cfg: Config, syn: Synthetic, run_id: str, version: str) -> dict[str, Any]:
    """Observed FPIR of the match run's non-mated probes at each band against the band's target."""
    from pyspark.sql import functions as F

    from facelink.lake.tables import read_table

    rows = (read_table(spark, cfg, "matches").filter(F.col("run_id") == run_id)
            .select("probe_record_id", "band", "gallery_size").toPandas())
    probe_pos = rows["probe_record_id"].str[1:].astype(int).to_numpy()
    stranger = ~syn.mated[probe_pos]
    bands = dict(cfg.match.bands)
    hits = {}
    for band, level in bands.items():
        in_band = rows["band"].isin([b for b, v in bands.items() if v <= level]).to_numpy()
        hits[band] = int(np.unique(probe_pos[stranger & in_band]).size)
    return fpir_rows(bands, hits, int((~syn.mated).sum()), int(syn.xb.shape[0]))


def dedup_recall(spark: Any, cfg: Config, syn: Synthetic, run_id: str, floor: float,
                 rng: np.random.Generator) -> dict[str, Any]:
    """recall@10 of the stored duplicate pairs against exact self-search above the run's threshold."""
    from pyspark.sql import functions as F

    from facelink.lake.tables import read_table

    n = syn.xb.shape[0]
    sample = np.sort(rng.choice(n, size=min(EVAL_SAMPLE, n), replace=False))
    scores, ids = exact_topk(syn.xb, syn.xb[sample], K + 1)
    wanted = [str(r) for r in gallery_record(sample)]
    cand = read_table(spark, cfg, "duplicate_candidates").filter(F.col("run_id") == run_id)
    rows = (cand.filter(F.col("record_id_a").isin(wanted) | F.col("record_id_b").isin(wanted))
            .select("record_id_a", "record_id_b").collect())
    stored = {(r["record_id_a"], r["record_id_b"]) for r in rows}
    expected = found = 0
    for row, pos in enumerate(sample):
        me = str(gallery_record(int(pos)))
        for i, s in zip(ids[row], scores[row], strict=True):
            if i < 0 or i == pos or s < floor + SCORE_TOL:
                continue
            other = str(gallery_record(int(i)))
            expected += 1
            found += (min(me, other), max(me, other)) in stored
    pairs = cand.select("record_id_a", "record_id_b").toPandas()
    same = syn.labels[pairs["record_id_a"].str[1:].astype(int).to_numpy()] == \
        syn.labels[pairs["record_id_b"].str[1:].astype(int).to_numpy()]
    _, counts = np.unique(syn.labels, return_counts=True)
    true_pairs = int(np.sum(counts * (counts - 1) // 2))
    return {"sampled_faces": len(wanted), "exact_pairs_above_threshold": expected, "stored_of_those": found,
            "recall@10": round(found / expected, 4) if expected else None,
            "recall_ci95": recall_interval(found, expected),
            "candidate_pairs": len(pairs), "candidates_same_identity": int(same.sum()),
            "true_duplicate_pairs": true_pairs,
            "true_duplicate_pairs_found": round(float(same.sum()) / true_pairs, 4) if true_pairs else None}


def run_jobs(spark: Any, cfg: Config, syn: Synthetic, run: dict[str, Any], with_dedup: bool = True) -> None:
    """Time build_index, match and (unless ``with_dedup`` is false) dedup, then check them against exact search
    (fills ``run``)."""
    from jobs import build_index, dedup, match

    who = ["audit.operator=bench", "audit.authority=BENCH"]
    res_b, run["build_index"] = measured("build_index", lambda: build_index.run(spark, cfg, full=True,
                                                                               run_id="bench-index"))
    run["build_index"].update(index_version=res_b.index_version, partitions=res_b.partitions, vectors=res_b.vectors)
    match_cfg = cfg.with_overrides([*who, "audit.purpose=application_screening"])
    res_m, run["match"] = measured("match", lambda: match.run(spark, match_cfg, run_id="bench-match"))
    run["match"].update(probes=res_m.probes, searched=res_m.searched, candidates=res_m.candidates,
                        strong=res_m.strong, threshold_score=round(res_m.threshold_score, 5))
    faiss.omp_set_num_threads(cfg.index.threads)
    rng = np.random.default_rng(SEED + 9)
    run["match"]["vs_exact"] = match_recall(spark, cfg, syn, "bench-match", res_m.threshold_score, rng)
    run["match"]["sanity_1n"] = match_sanity(spark, cfg, syn, "bench-match")
    run["match"]["fpir_check"] = match_fpir(spark, cfg, syn, "bench-match", res_m.index_version)
    if not with_dedup:
        return
    dedup_cfg = cfg.with_overrides([*who, "audit.purpose=duplicate_enrolment_check"])
    res_d, run["dedup"] = measured("dedup", lambda: dedup.run(spark, dedup_cfg, run_id="bench-dedup", full=True))
    run["dedup"].update(searched=res_d.searched, candidates=res_d.candidates, clusters=res_d.clusters,
                        threshold_score=round(res_d.threshold_score, 5))
    faiss.omp_set_num_threads(cfg.index.threads)
    run["dedup"]["vs_exact"] = dedup_recall(spark, cfg, syn, "bench-dedup", res_d.threshold_score, rng)


def run_match_bench(gallery: int, probes: int, master: str, overrides: Sequence[str], lake: Path | None,
                    results_path: Path, with_dedup: bool = True) -> dict[str, Any]:
    """Generate, load, run the jobs and evaluate; merge the entry for this size into ``results_path``."""
    from facelink.registry import recogniser, recogniser_id
    from facelink.session import build_session

    run: dict[str, Any] = {"gallery": gallery, "probes": probes, "overrides": list(overrides),
                           "load_avg_1m_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="bench-match-") as tmp:
        root = lake or Path(tmp)
        # Vectors as wide as the configured recogniser's (a fused one is wider), with reference_stats()'s score
        # distribution (shaped after mobilefacenet_128d on lfw_dev); stored under the configured model id.
        cfg = load_config("local", [f"lake.root={root / 'lake'}", f"spark.master={master}", *overrides])
        model_id = recogniser_id(cfg)
        stats = reference_stats(dim=recogniser(cfg).dim)
        run["dim"] = stats.dim
        syn, run["generate"] = measured("generate", lambda: Synthetic(stats, gallery, probes))
        cal = fit_synthetic_calibration(stats, model_id)
        cal_path = cal.save(calibration_path(cfg, model_id))
        run["calibration"] = {"version": cal.version, "source": cal.source, "path": str(cal_path)}
        spark = build_session(cfg)
        try:
            run["master"], run["cores"] = spark.sparkContext.master, int(spark.sparkContext.defaultParallelism)

            def load() -> int:
                g = write_tables(spark, cfg, write_parquet(syn.xb, syn.labels, Path(tmp) / "gallery"), "gallery",
                                 model_id)
                return g + write_tables(spark, cfg, write_parquet(syn.xq, syn.probe_labels, Path(tmp) / "probes"),
                                        "probe", model_id)

            rows, run["write_tables"] = measured("write", load)
            run["write_tables"]["rows"] = rows
            run_jobs(spark, cfg, syn, run, with_dedup)
        finally:
            spark.stop()
    applies = (gallery, probes) == TARGET_SIZES
    run["targets"] = {
        "applies": applies,
        "match_s": TARGET_MATCH_S, "match_met": run["match"]["wall_s"] <= TARGET_MATCH_S if applies else None,
        "dedup_s": TARGET_DEDUP_S,
        "dedup_met": run["dedup"]["wall_s"] <= TARGET_DEDUP_S if applies and "dedup" in run else None,
    }
    run["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    write_run(results_path, run)
    log.info("wrote %s", results_path)
    return run


def write_run(results_path: Path, run: dict[str, Any]) -> None:
    """Merge ``run`` into the results file, replacing an earlier run of the same gallery and probe sizes."""
    report: dict[str, Any] = {"runs": []}
    if results_path.is_file():
        report = json.loads(results_path.read_text())
    report["machine"] = {**machine_info(), "platform": platform.platform(), "faiss": faiss.__version__}
    key = (run["gallery"], run["probes"])
    report["runs"] = sorted([r for r in report.get("runs", []) if (r["gallery"], r["probes"]) != key] + [run],
                            key=lambda r: (r["gallery"], r["probes"]))
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(report, indent=2) + "\n")


def print_run(run: dict[str, Any]) -> None:
    """Headline lines of one run."""
    print(f"gallery {run['gallery']:,} / probes {run['probes']:,} on {run['master']} ({run['cores']} cores)")
    for phase in ("generate", "write_tables", "build_index", "match", "dedup"):
        if phase not in run:
            print(f"  {phase:12s} not run")
            continue
        p = run[phase]
        mem = p["memory"]
        print(f"  {phase:12s} {p['wall_s']:9.1f} s  peak total {mem['peak_total_gib']:.2f} GiB "
              f"(JVM {mem['peak_jvm_gib']:.2f}, workers {mem['peak_workers_sum_gib']:.2f}, "
              f"driver {mem['peak_driver_python_gib']:.2f})  load {p['load_avg_1m_before']}")
    dedup_recall_10 = run["dedup"]["vs_exact"]["recall@10"] if "dedup" in run else "not run"
    print(f"  match recall@10 vs exact {run['match']['vs_exact']['recall@10']}, "
          f"dedup recall@10 vs exact {dedup_recall_10}")
    print(f"  1:N sanity {run['match']['sanity_1n']}")
    if "fpir_check" in run["match"]:
        for line in format_check_rows(run["match"]["fpir_check"]):
            print(line)
    print(f"  targets {run['targets']}")


def run_fpir_only(gallery: int, probes: int, overrides: Sequence[str], results_path: Path) -> dict[str, Any]:
    """Band thresholds from the synthetic calibration's FPIR model against exact search of the strangers.

    No Spark and no index: the thresholds match would use for a gallery of ``gallery`` faces, and each non-mated
    probe's exact top score over the whole gallery (FAISS flat). Merges the entry into ``results_path``.
    """
    from facelink.registry import recogniser_id

    cfg = load_config("local", ["models.recogniser=mobilefacenet_128d", *overrides])
    model_id = recogniser_id(cfg)
    stats = reference_stats()
    run: dict[str, Any] = {"gallery": gallery, "probes": probes, "overrides": list(overrides)}
    syn, run["generate"] = measured("generate", lambda: Synthetic(stats, gallery, probes))
    cal, run["calibrate"] = measured("calibrate", lambda: fit_synthetic_calibration(stats, model_id))
    model = cal.fpir_model
    bands = dict(cfg.match.bands)
    thresholds = {b: cal.score_at_fpir(v, gallery) for b, v in bands.items()}
    faiss.omp_set_num_threads(cfg.index.threads)
    strangers = np.flatnonzero(~syn.mated)
    (top, _), run["search"] = measured("search", lambda: exact_topk(syn.xb, syn.xq[strangers], 1))
    hits = {b: int(np.sum(top[:, 0] >= t)) for b, t in thresholds.items()}
    run["calibration"] = {"version": cal.version, "source": cal.source,
                          "fpir_model": model.describe(gallery, bands) if model else None}
    run["band_thresholds"] = thresholds
    run["fpir_check"] = fpir_rows(bands, hits, int(strangers.size), gallery)
    write_run(results_path, run)
    print(f"FPIR at gallery {gallery:,} ({strangers.size:,} non-mated probes, exact search); model: "
          f"{run['calibration']['fpir_model']}")
    for line in format_check_rows(run["fpir_check"]):
        print(line)
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=TARGET_SIZES[0])
    parser.add_argument("--probes", type=int, default=TARGET_SIZES[1])
    parser.add_argument("--master", default="local[*]", help="Spark master (default: all local cores)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="configuration override (repeatable)")
    parser.add_argument("--lake", type=Path, default=None, help="keep the lake here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    parser.add_argument("--no-dedup", action="store_true",
                        help="time build_index and match only (the full dedup of 1M took 11 minutes here)")
    parser.add_argument("--fpir-only", action="store_true",
                        help="only the FPIR check: band thresholds against exact search of the strangers (no Spark)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.fpir_only:
        out = FPIR_RESULTS_PATH if args.out == RESULTS_PATH else args.out
        run_fpir_only(args.gallery, args.probes, args.overrides, out)
        return 0
    run = run_match_bench(args.gallery, args.probes, args.master, args.overrides, args.lake, args.out,
                          with_dedup=not args.no_dedup)
    print_run(run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
