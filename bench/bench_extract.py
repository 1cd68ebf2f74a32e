"""Extraction benchmark: the Spark extract job on all local cores against the bare single-process loop.

The same ``--photos`` lfw_dev photos (a seeded sample) go through, in one run:

1. the bare reference loop (``bench.bare_reference.run_bare_reference``: cv2 YuNet, one thread, one
   photo at a time) with ``mobilefacenet_128d``;
2. the extract job's face pipeline in this process (``udfs.pipeline.FacePipeline.process_batch`` built
   with the job's settings, Arrow-batch sized calls): ``jobs.extract`` records its job-level seconds per
   stage (open, pending, pipeline, check, merge) in ``audit``, reported as ``spark.job_seconds``, but its
   ``StageTimings`` stay in the Python workers, so the decode / detect / align / quality / embed split is
   measured here;
3. in a Spark session on ``--master``: two warm-up rounds of ingest + extract over halves of ``--warmup``
   other photos (the first job of a session pays for JIT compilation, Python worker start-up and model
   loading, and only the second round runs the anti-join and MERGE against non-empty tables as the
   measured job does; their times are reported as ``spark.warmup.rounds``), then ``jobs.ingest.run`` of
   the benchmark photos (timed, not part of the ratio) and ``jobs.extract.run`` alone, timed, with the RSS
   of the driver JVM and every Python worker sampled every 0.1 s (``bench.sampling``).

Reported: photos/s, per-core photos/s (Spark's rate over the cores it used), the ratio Spark per-core /
bare (target >= 0.85), the same for the job's transform alone written to Spark's no-op sink (what the
job costs beyond its Delta reads, counts and merge), photos per CPU-second of both (less sensitive to
other load on the machine), the stage split, peak memory per worker, and how closely the job's
embeddings agree with the bare loop's (which detects with ``cv2.FaceDetectorYN``, so small differences
are expected). Results go to ``bench/results/extract.json`` with the load average along the run.

Usage: ``python -m bench.bench_extract [--photos 2000] [--warmup 64] [--master 'local[*]'] [--set key=value]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import platform
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.bare_reference import run_bare_reference
from bench.sampling import TreeSampler, machine_info
from facelink.config import Config, load_config

log = logging.getLogger("bench_extract")

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = REPO_ROOT / "bench" / "results" / "extract.json"
RECOGNISER = "mobilefacenet_128d"
#: The job runs the bare loop's work (one model, YuNet at 320, no flip), whatever the configured default is:
#: the ratio measures Spark's overhead, not the cost of a richer extraction. ``--set`` may change it.
REFERENCE_EXTRACTION = (f"models.recogniser={RECOGNISER}", "extract.detect_size=320", "extract.flip_tta=false")
TARGET_RATIO = 0.85
STAGES = ("decode", "detect", "align", "quality", "embed")
SEED = 0


def select_photos(lfw_dir: Path, n: int, n_warmup: int = 0, seed: int = SEED) -> tuple[list[str], list[str]]:
    """``n`` photo paths (relative to ``lfw_dir``) drawn with a seed, and ``n_warmup`` others, in path order."""
    with (lfw_dir / "manifest.csv").open() as fh:
        paths = sorted(row["path"] for row in csv.DictReader(fh))
    order = np.random.default_rng(seed).permutation(len(paths))
    chosen, warm = order[:n], order[n : n + n_warmup]
    return [paths[i] for i in sorted(chosen)], [paths[i] for i in sorted(warm)]


def record_id(path: str) -> str:
    """The record id a photo gets in the benchmark's archive: its file stem (unique in LFW)."""
    return Path(path).stem


def master_cores(master: str) -> int:
    """Cores a ``local[N]`` / ``local[*]`` / ``local`` master uses (the machine's count otherwise)."""
    match = re.fullmatch(r"local(?:\[(\d+|\*)(?:,\s*\d+)?\])?", master.strip())
    if match is not None and match.group(1) is None:
        return 1
    if match is not None and match.group(1).isdigit():
        return int(match.group(1))
    return os.cpu_count() or 1


def write_manifest(photos: Sequence[str], lfw_dir: Path, out: Path) -> Path:
    """An ingest manifest ``record_id,path`` (absolute paths) for ``photos``."""
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["record_id", "path"])
        for path in photos:
            writer.writerow([record_id(path), str((lfw_dir / path).resolve())])
    return out


def bench_bare(photos: Sequence[str], lfw_dir: Path, models_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bare loop's figures (wall clock includes reading the files) and its embeddings by record id."""
    cv2.setNumThreads(1)
    cpu0, t0 = time.process_time(), time.perf_counter()
    run = run_bare_reference(photos, lfw_dir, models_dir, RECOGNISER)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    summary = run.summary()
    out: dict[str, Any] = {
        "recogniser": RECOGNISER,
        "threads": 1,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_photo": round(1000 * cpu / len(photos), 2),
        "photos_per_s": round(len(photos) / wall, 2),
        "photos_per_cpu_s": round(len(photos) / cpu, 2) if cpu else None,
        "timed_photos_per_s": round(summary["photos_per_s"], 2),
        **{k: round(v, 3) for k, v in summary.items() if k.endswith("_ms")},
        "no_face": int(summary["no_face"]),
    }
    return out, {record_id(p): e for p, e in run.embeddings.items()}


def bench_split(cfg: Config, photos: Sequence[str], lfw_dir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The job's stage split: its pipeline, built with its settings, run here on Arrow-batch sized calls."""
    from facelink.extraction.settings import ExtractSettings, build_extraction_pipeline

    settings = ExtractSettings.from_config(cfg)
    cv2.setNumThreads(settings.threads)
    pipeline = build_extraction_pipeline(settings, cached=False)
    batch = cfg.spark.arrow_batch_size
    embeddings: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for start in range(0, len(photos), batch):
        chunk = photos[start : start + batch]
        results = pipeline.process_batch([(lfw_dir / p).read_bytes() for p in chunk])
        for path, result in zip(chunk, results, strict=True):
            if result.primary is not None:
                embeddings[record_id(path)] = result.primary["embedding"]
    wall = time.perf_counter() - t0
    timings = pipeline.timings.as_dict()
    out: dict[str, Any] = {
        "source": (
            "in-process udfs.pipeline.FacePipeline.process_batch with the extract job's settings, "
            f"{batch}-photo calls (the Arrow batch size), {settings.threads} thread(s): the job's per-model "
            "StageTimings stay in its Python workers"
        ),
        "wall_s": round(wall, 2),
        "photos_per_s": round(len(photos) / wall, 2),
        "faces": int(timings["faces"]),
        # The job embeds every detected face and measures its quality; the bare loop embeds the primary only.
        "embedded_faces_per_photo": round(timings["faces"] / max(len(photos), 1), 3),
        **{k: round(v, 3) for k, v in timings.items() if k.endswith("_ms_per_photo")},
    }
    return out, embeddings


def agreement(reference: dict[str, Any], spark_emb: dict[str, np.ndarray]) -> dict[str, Any]:
    """How the job's primary-face embeddings compare with ``reference`` where both found a face."""
    both = sorted(k for k, v in reference.items() if v is not None and k in spark_emb)
    out: dict[str, Any] = {
        "both_found": len(both),
        "only_reference": sum(v is not None and k not in spark_emb for k, v in reference.items()),
        "only_spark": sum(k not in reference or reference[k] is None for k in spark_emb),
    }
    if both:
        a = np.stack([np.asarray(reference[k], np.float32) for k in both])
        b = np.stack([spark_emb[k] for k in both])
        cos = np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        out.update(
            max_abs_diff=float(np.abs(a - b).max()),
            cosine_mean=round(float(cos.mean()), 6),
            cosine_min=round(float(cos.min()), 6),
            share_cosine_ge_0_99=round(float(np.mean(cos >= 0.99)), 4),
            identical=int(np.sum(np.all(a == b, axis=1))),
        )
    return out


def spark_embeddings(spark: Any, cfg: Config, run_id: str) -> dict[str, np.ndarray]:
    """Primary-face embeddings the extract run wrote, by record id."""
    from pyspark.sql import functions as F

    from facelink.lake.tables import read_table

    rows = (
        read_table(spark, cfg, "faces").filter((F.col("extract_run_id") == run_id) & F.col("is_primary"))
        .select("record_id", "embedding").collect()
    )
    return {r["record_id"]: np.asarray(r["embedding"], np.float32) for r in rows}


def job_seconds(spark: Any, cfg: Config, run_id: str) -> dict[str, float]:
    """The extract run's seconds per stage, as it recorded them in ``audit``."""
    from pyspark.sql import functions as F

    from facelink.lake.tables import read_table

    row = read_table(spark, cfg, "audit").filter(F.col("run_id") == run_id).select("detail").first()
    return dict(json.loads(row["detail"]).get("seconds", {})) if row and row["detail"] else {}


def timed_extract(spark: Any, cfg: Config, run_id: str) -> tuple[Any, float]:
    """One extraction run (what ``jobs.extract`` runs) over the pending gallery photos, and its wall time."""
    from facelink.extraction.run import extract_faces

    t0 = time.perf_counter()
    res = extract_faces(spark, cfg, role="gallery", run_id=run_id)
    return res, time.perf_counter() - t0


def udf_only(spark: Any, cfg: Config, n: int) -> dict[str, Any]:
    """The job's Spark transform alone on the benchmark photos, to a no-op sink: no Delta merge, no counts."""
    from pyspark.sql import functions as F

    from facelink.extraction.settings import ExtractSettings
    from facelink.extraction.udf import transform_extract
    from facelink.lake.tables import read_table

    photos = read_table(spark, cfg, "photos").filter(F.col("ingest_run_id") == "bench-ingest").select(
        "record_id", "photo_id", "role", "partition", "content")
    n_parts = max(1, math.ceil(n / cfg.extract.photos_per_partition))
    with TreeSampler(0.1).watch() as peaks:
        t0 = time.perf_counter()
        rows = transform_extract(photos, ExtractSettings.from_config(cfg), n_parts, "bench-udf-only")
        rows.write.format("noop").mode("overwrite").save()
        wall = time.perf_counter() - t0
    cores = int(spark.sparkContext.defaultParallelism)
    return {"what": "facelink.extraction.udf.transform_extract over the same photos written to Spark's noop sink "
                    "(warm workers)",
            "wall_s": round(wall, 2), "photos_per_s": round(n / wall, 2),
            "photos_per_s_per_core": round(n / wall / cores, 2),
            "worker_cpu_ms_per_photo": round(1000 * peaks.cpu_s["worker"] / n, 2),
            "jvm_cpu_ms_per_photo": round(1000 * peaks.cpu_s["jvm"] / n, 2)}


def split_manifest(manifest: Path, parts: int) -> list[Path]:
    """``manifest`` (a CSV with a header) split into ``parts`` files of consecutive rows beside it."""
    header, *rows = manifest.read_text().splitlines(keepends=True)
    size = math.ceil(len(rows) / parts)
    out = []
    for i in range(parts):
        path = manifest.with_name(f"{manifest.stem}-{i}{manifest.suffix}")
        path.write_text(header + "".join(rows[i * size : (i + 1) * size]))
        out.append(path)
    return out


def bench_spark(cfg: Config, manifest: Path, n: int, warm_manifest: Path | None,
                n_warm: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Ingest (timed apart), a warm-up extract on other photos, then the extract job alone, timed and sampled."""
    from facelink.session import build_session
    from jobs import ingest

    spark = build_session(cfg)
    try:
        cores = int(spark.sparkContext.defaultParallelism)
        ingest_out: dict[str, Any] = {}
        warm: dict[str, Any] = {"photos": 0, "rounds": []}
        if warm_manifest is not None:
            # A first job pays for JIT compilation, Python worker start-up and model loading: measured apart,
            # in one task per core so that every Python worker has loaded the models. Two warm-up rounds: the
            # first creates the tables; only the second runs the code the measured job runs (the anti-join
            # against a non-empty faces table, a MERGE into an existing table), so that the measured job pays
            # for its work and not for compiling it.
            for i, part in enumerate(split_manifest(warm_manifest, 2)):
                n_part = sum(1 for _ in part.open()) - 1
                warm_cfg = cfg.with_overrides([f"extract.photos_per_partition={math.ceil(n_part / cores)}"])
                ingest.run(spark, warm_cfg, str(part), "gallery", f"bench-ingest-warmup-{i}")
                res, wall = timed_extract(spark, warm_cfg, f"bench-extract-warmup-{i}")
                warm["rounds"].append({"photos": res.photos, "wall_s": round(wall, 2),
                                       "photos_per_s": round(res.photos / wall, 2)})
            warm["photos"] = sum(r["photos"] for r in warm["rounds"])
        t0 = time.perf_counter()
        ing = ingest.run(spark, cfg, str(manifest), "gallery", "bench-ingest")
        ingest_out = {"wall_s": round(time.perf_counter() - t0, 2), "new_photos": ing.new_photos,
                      "rejects": ing.rejects}
        load_before = os.getloadavg()[0]
        with TreeSampler(0.1).watch() as peaks:
            res, wall = timed_extract(spark, cfg, "bench-extract")
        cpu = sum(peaks.cpu_s.values()) - peaks.cpu_s["driver_python"]
        out: dict[str, Any] = {
            "master": spark.sparkContext.master,
            "cores": cores,
            "tasks": res.tasks,
            "photos_per_partition": cfg.extract.photos_per_partition,
            "threads_per_task": cfg.extract.threads_per_task,
            "warmup": warm,
            "wall_s": round(wall, 2),
            "photos": res.photos,
            "faces": res.faces,
            "photos_without_face": res.status_rows,
            "photos_per_s": round(res.photos / wall, 2),
            "photos_per_s_per_core": round(res.photos / wall / cores, 2),
            "cpu_s_jvm_and_workers": round(cpu, 2),
            "photos_per_cpu_s": round(res.photos / cpu, 2) if cpu else None,
            "worker_cpu_ms_per_photo": round(1000 * peaks.cpu_s["worker"] / max(res.photos, 1), 2),
            "jvm_cpu_ms_per_photo": round(1000 * peaks.cpu_s["jvm"] / max(res.photos, 1), 2),
            "load_avg_1m_before": round(load_before, 2),
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
            "memory": peaks.as_dict(),
        }
        if res.photos != n:
            log.warning("extract processed %d photos, expected %d", res.photos, n)
        out["job_seconds"] = job_seconds(spark, cfg, "bench-extract")
        embeddings = spark_embeddings(spark, cfg, "bench-extract")
        out["udf_only"] = udf_only(spark, cfg, n)
        return ingest_out, out, embeddings
    finally:
        spark.stop()


def run_extract_bench(n_photos: int, n_warmup: int, master: str, overrides: Sequence[str], data_dir: Path,
                      models_dir: Path, results_path: Path) -> dict[str, Any]:
    """Run the three measurements on the same photos and write the report to ``results_path``."""
    lfw_dir = data_dir / "lfw_dev"
    photos, warm_photos = select_photos(lfw_dir, n_photos, n_warmup)
    n = len(photos)
    cores_hint = master_cores(master)
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        base_cfg = load_config("local", [f"paths.models_dir={models_dir}", f"paths.data_dir={data_dir}"])
        # Every core gets work: with few photos, partitions are made smaller than the configured size.
        per_partition = min(base_cfg.extract.photos_per_partition, max(1, math.ceil(n / cores_hint)))
        cfg = load_config("local", [
            f"lake.root={tmp}/lake", f"spark.master={master}", f"paths.models_dir={models_dir}",
            f"paths.data_dir={data_dir}", f"extract.photos_per_partition={per_partition}", *REFERENCE_EXTRACTION,
            *overrides,
        ])
        report: dict[str, Any] = {
            "machine": {**machine_info(), "platform": platform.platform()},
            "photos": n, "seed": SEED, "recogniser": cfg.models.recogniser,
            "load_avg_1m": {"start": round(os.getloadavg()[0], 2)},
        }
        log.info("bare loop over %d photos", n)
        report["bare"], bare_emb = bench_bare(photos, lfw_dir, models_dir)
        report["load_avg_1m"]["after_bare"] = round(os.getloadavg()[0], 2)
        log.info("bare: %s", report["bare"])
        report["stage_split"], split_emb = bench_split(cfg, photos, lfw_dir)
        report["load_avg_1m"]["after_split"] = round(os.getloadavg()[0], 2)
        log.info("split: %s", report["stage_split"])
        manifest = write_manifest(photos, lfw_dir, Path(tmp) / "manifest.csv")
        warm = write_manifest(warm_photos, lfw_dir, Path(tmp) / "warmup.csv") if warm_photos else None
        report["ingest"], report["spark"], spark_emb = bench_spark(cfg, manifest, n, warm, len(warm_photos))
        log.info("spark: %s", report["spark"])
    ratio = report["spark"]["photos_per_s_per_core"] / report["bare"]["photos_per_s"]
    report["ratio_per_core_udf_only"] = round(
        report["spark"]["udf_only"]["photos_per_s_per_core"] / report["bare"]["photos_per_s"], 3)
    cpu_ratio = None
    if report["spark"]["photos_per_cpu_s"] and report["bare"]["photos_per_cpu_s"]:
        cpu_ratio = round(report["spark"]["photos_per_cpu_s"] / report["bare"]["photos_per_cpu_s"], 3)
    report.update(
        ratio_per_core=round(ratio, 3), target_ratio=TARGET_RATIO, target_met=bool(ratio >= TARGET_RATIO),
        ratio_per_cpu_s=cpu_ratio,
        embeddings_vs_bare=agreement(bare_emb, spark_emb),
        embeddings_vs_inprocess_pipeline=agreement(dict(split_emb), spark_emb),
    )
    report["load_avg_1m"]["end"] = round(os.getloadavg()[0], 2)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", results_path)
    return report


def print_report(report: dict[str, Any]) -> None:
    """A few lines of headline numbers."""
    bare, spark, split = report["bare"], report["spark"], report["stage_split"]
    mem = spark["memory"]
    print(f"{report['photos']} photos, {spark['cores']} Spark cores, load avg {report['load_avg_1m']}")
    print(f"bare loop      {bare['photos_per_s']:8.2f} photos/s   ({bare['photos_per_cpu_s']} per CPU-s)")
    print(f"spark extract  {spark['photos_per_s']:8.2f} photos/s = {spark['photos_per_s_per_core']:.2f} per core "
          f"({spark['photos_per_cpu_s']} per CPU-s)")
    print(f"transform only {spark['udf_only']['photos_per_s']:8.2f} photos/s = "
          f"{spark['udf_only']['photos_per_s_per_core']:.2f} per core (no Delta write, no counts)")
    print(f"ratio per core {report['ratio_per_core']:.3f} (target >= {TARGET_RATIO}: "
          f"{'met' if report['target_met'] else 'missed'}); per CPU-s {report['ratio_per_cpu_s']}")
    stages = ", ".join(f"{s} {split[f'{s}_ms_per_photo']:.2f}" for s in STAGES)
    print(f"stage split ms/photo: {stages}")
    print(f"job seconds by stage: {report['spark'].get('job_seconds', {})}")
    print(f"peak RSS: worker max {mem['peak_worker_max_gib']} GiB, workers sum {mem['peak_workers_sum_gib']} GiB, "
          f"JVM {mem['peak_jvm_gib']} GiB")
    print(f"embeddings vs bare: {report['embeddings_vs_bare']}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=64,
                        help="photos (not among --photos) extracted first, untimed for the ratio; 0: a cold run")
    parser.add_argument("--master", default="local[*]", help="Spark master (default: all local cores)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="configuration override for the Spark run (repeatable)")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "datasets")
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT.parent / "shared" / "models")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = run_extract_bench(args.photos, args.warmup, args.master, args.overrides, args.data_dir.resolve(),
                               args.models_dir.resolve(), args.out)
    print_report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
