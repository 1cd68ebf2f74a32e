"""PNG plots of the benchmark results in ``bench/results/`` (matplotlib, Agg backend).

Reads whichever of ``bare_reference.json``, ``extract.json``, ``index.json`` and ``match.json`` exist and
draws ``extract_throughput.png`` (bare vs Spark per-core photos/s, stage split), ``index_recall_qps.png``
(recall@10 vs queries/s per gallery size, exact search as reference), ``index_scaling.png`` (build time
and peak memory vs gallery size) and ``match_scaling.png`` (wall time and memory of the match / dedup
jobs vs gallery size, or bars for a single size). A plot whose JSON is missing is skipped.

Usage: ``python -m bench.plots [--results-dir bench/results]``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

log = logging.getLogger("bench_plots")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
STAGES = ("decode", "detect", "align", "quality", "embed")
JOBS = ("write_tables", "build_index", "match", "dedup")


def load(results_dir: Path, name: str) -> Any:
    """The parsed ``<name>.json``, or None when it is missing or unreadable."""
    path = results_dir / f"{name}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        log.warning("%s: not valid JSON (%s): skipped", path, exc)
        return None


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log.info("wrote %s", path)
    return path


def plot_extract(extract: dict[str, Any], bare_ref: dict[str, Any] | None, out: Path) -> Path:
    """Bars of photos/s (bare, in-process pipeline, Spark per core) and stacked stage times."""
    fig, (ax_rate, ax_split) = plt.subplots(1, 2, figsize=(12, 4.5))
    bare, split, spark = extract["bare"], extract["stage_split"], extract["spark"]
    names = ["bare loop\n(1 thread)", "job pipeline\nin-process (1 thread)", f"Spark job\nper core ({spark['cores']})"]
    rates = [bare["photos_per_s"], split["photos_per_s"], spark["photos_per_s_per_core"]]
    if "udf_only" in spark:
        names.append("Spark transform only\n(noop sink) per core")
        rates.append(spark["udf_only"]["photos_per_s_per_core"])
    bars = ax_rate.bar(names, rates, color=["#888888", "#4c72b0", "#dd8452", "#55a868"][: len(names)])
    ax_rate.bar_label(bars, fmt="%.1f")
    target = extract["target_ratio"] * bare["photos_per_s"]
    ax_rate.axhline(target, ls="--", color="red", lw=1)
    ax_rate.text(len(names) - 0.6, target, f"target {extract['target_ratio']}x bare", color="red", va="bottom",
                 ha="right")
    ax_rate.tick_params(axis="x", labelsize=8)
    ax_rate.set_ylabel("photos / s")
    ax_rate.set_title(f"{extract['photos']} lfw_dev photos: ratio per core {extract['ratio_per_core']} "
                      f"(load {extract['load_avg_1m']['start']})", fontsize=10)
    rows: list[tuple[str, dict[str, float]]] = [
        ("bare loop", {s: bare.get(f"{s}_ms", 0.0) for s in STAGES}),
        ("job pipeline (Spark side)", {s: split.get(f"{s}_ms_per_photo", 0.0) for s in STAGES}),
    ]
    ref = (bare_ref or {}).get("bare/mobilefacenet_128d")
    if ref:
        rows.insert(0, ("bare_reference (LFW pairs)", {s: ref.get(f"{s}_ms", 0.0) for s in STAGES}))
    for y, (_, ms) in enumerate(rows):
        left = 0.0
        for i, stage in enumerate(STAGES):
            ax_split.barh(y, ms[stage], left=left, color=f"C{i}", label=stage if y == 0 else None)
            left += ms[stage]
    totals = [sum(ms.values()) for _, ms in rows]
    limit = 1.8 * max(totals)
    per_core = {"Spark job wall / photo / core": spark["photos_per_s_per_core"]}
    if "udf_only" in spark:
        per_core["Spark transform only / photo / core"] = spark["udf_only"]["photos_per_s_per_core"]
    for y, rate in enumerate(per_core.values(), start=len(rows)):
        job_ms = 1000.0 / rate if rate else 0.0
        ax_split.barh(y, min(job_ms, limit), color="#cccccc", hatch="//",
                      label="wall per photo per core" if y == len(rows) else None)
        ax_split.text(min(job_ms, limit), y, f" {job_ms:.0f} ms" + (" (clipped)" if job_ms > limit else ""),
                      va="center", ha="right" if job_ms > limit else "left", fontsize=8)
    ax_split.set_xlim(0, limit * 1.05)
    ax_split.set_yticks(range(len(rows) + len(per_core)), [label for label, _ in rows] + list(per_core))
    ax_split.tick_params(axis="y", labelsize=8)
    ax_split.set_xlabel("ms per photo")
    ax_split.set_title("stage split (the Spark side measured in-process: the job exposes no timings)", fontsize=9)
    ax_split.legend(fontsize=8, loc="lower right")
    return _save(fig, out)


def plot_index_recall(index: dict[str, Any], out: Path) -> Path:
    """recall@10 vs queries/s at each operating point per gallery size; exact search marked with x."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, row in enumerate(index["results"]):
        k = next((key.split("@")[1] for key in row if key.startswith("knn_recall@")), "10")
        points = sorted([(row[f"{p}_recall@{k}"], row[f"{p}_qps"], p) for p in ("mate", "knn")] + [
            (1.0, row["exact_qps"], "exact")])
        ax.plot([p[0] for p in points], [p[1] for p in points], "-o", color=f"C{i}",
                label=f"{row['size']:,} ({row.get('index', '?')})")
        ax.plot(1.0, row["exact_qps"], "x", color=f"C{i}", ms=10, mew=2)
        for recall, qps, name in points:
            if name != "exact":
                ax.annotate(f"{name} np={row[f'{name}_nprobe']}", (recall, qps), fontsize=7,
                            textcoords="offset points", xytext=(4, 4))
    ax.axvline(index.get("target_recall", 0.98), ls="--", color="red", lw=1, label="target recall")
    ax.set_yscale("log")
    ax.set_xlabel("recall@10 against exact search")
    ax.set_ylabel("queries / s (log)")
    ax.set_title(f"partition index vs exact search (x), {index['results'][0].get('threads', '?')} threads", fontsize=10)
    ax.legend(title="gallery size (index)", fontsize=8)
    return _save(fig, out)


def plot_index_scaling(index: dict[str, Any], out: Path) -> Path:
    """Build time (train, add + merge) and peak build memory vs gallery size."""
    rows = sorted(index["results"], key=lambda r: r["size"])
    sizes = [r["size"] for r in rows]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    for key, style in (("build_s", "-o"), ("train_s", "--s"), ("add_merge_s", ":^")):
        ax_t.plot(sizes, [r[key] for r in rows], style, label=key)
    ax_t.set_ylabel("seconds")
    ax_m.plot(sizes, [r["peak_rss_build_gib"] for r in rows], "-o", color="C3")
    ax_m.set_ylabel("peak RSS during build (GiB)")
    for ax in (ax_t, ax_m):
        ax.set_xscale("log")
        ax.set_xlabel("gallery size (vectors)")
        ax.grid(alpha=0.3)
    ax_t.legend()
    ax_t.set_title("index build time", fontsize=10)
    ax_m.set_title("index build memory", fontsize=10)
    return _save(fig, out)


def plot_match(match: dict[str, Any], out: Path) -> Path:
    """Wall time and peak memory of each job vs gallery size (bars when only one size was run)."""
    runs = sorted(match["runs"], key=lambda r: (r["gallery"], r["probes"]))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    if len({r["gallery"] for r in runs}) >= 2:
        for i, job in enumerate(JOBS):
            done = [r for r in runs if job in r]  # dedup may be left out of a run (--no-dedup)
            ax_t.plot([r["gallery"] for r in done], [r[job]["wall_s"] for r in done], "-o", color=f"C{i}", label=job)
            ax_m.plot([r["gallery"] for r in done], [r[job]["memory"]["peak_total_gib"] for r in done], "-o",
                      color=f"C{i}", label=job)
        for ax in (ax_t, ax_m):
            ax.set_xscale("log")
            ax.set_xlabel("gallery size")
        ax_t.set_yscale("log")
        for target, job in ((runs[-1]["targets"]["match_s"], "match"), (runs[-1]["targets"]["dedup_s"], "dedup")):
            ax_t.plot([1_000_000], [target], "r_", ms=20, mew=2)
            ax_t.annotate(f"{job} target", (1_000_000, target), fontsize=7, color="red", xytext=(6, 0),
                          textcoords="offset points")
        ax_t.legend(fontsize=8)
        title = f"probes per run: {sorted({r['probes'] for r in runs})}"
    else:
        run = runs[-1]
        jobs = [j for j in JOBS if j in run]
        x = range(len(jobs))
        ax_t.bar(x, [run[j]["wall_s"] for j in jobs], color=[f"C{i}" for i in x])
        ax_t.set_xticks(x, jobs)
        if run["targets"]["applies"]:
            ax_t.hlines([run["targets"]["match_s"], run["targets"]["dedup_s"]], [1.6, 2.6], [2.4, 3.4], colors="red",
                        linestyles="--", label="targets")
            ax_t.legend(loc="upper left")
        mems = ("peak_jvm_gib", "peak_workers_sum_gib", "peak_driver_python_gib")
        for k, key in enumerate(mems):
            ax_m.bar([i + (k - 1) * 0.27 for i in x], [run[j]["memory"][key] for j in jobs], width=0.27,
                     label=key.removeprefix("peak_").removesuffix("_gib"))
        ax_m.set_xticks(x, jobs)
        title = f"gallery {run['gallery']:,}, probes {run['probes']:,}"
    ax_t.set_ylabel("wall seconds")
    ax_m.set_ylabel("peak RSS (GiB)")
    ax_t.set_title(f"job wall time: {title}", fontsize=10)
    ax_m.set_title("job peak memory", fontsize=10)
    ax_m.legend(fontsize=8)
    return _save(fig, out)


def draw_all(results_dir: Path = RESULTS_DIR) -> dict[str, str]:
    """Draw every plot whose results exist; returns plot name -> written path or why it was skipped."""
    extract, index, match = (load(results_dir, n) for n in ("extract", "index", "match"))
    bare_ref = load(results_dir, "bare_reference")
    jobs: list[tuple[str, Any, Any]] = [
        ("extract_throughput", extract, lambda p: plot_extract(extract, bare_ref, p)),
        ("index_recall_qps", index, lambda p: plot_index_recall(index, p)),
        ("index_scaling", index, lambda p: plot_index_scaling(index, p)),
        ("match_scaling", match, lambda p: plot_match(match, p)),
    ]
    done: dict[str, str] = {}
    for name, data, draw in jobs:
        if not data:
            done[name] = "skipped: no results"
            log.info("%s: no results, skipped", name)
            continue
        try:
            done[name] = str(draw(results_dir / f"{name}.png"))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            done[name] = f"failed: {type(exc).__name__}: {exc}"
            log.warning("%s: could not draw (%s)", name, done[name])
            plt.close("all")
    return done


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; non-zero when a plot with results could not be drawn."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    done = draw_all(args.results_dir)
    for name, what in done.items():
        print(f"{name:20s} {what}")
    return 1 if any(v.startswith("failed") for v in done.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
