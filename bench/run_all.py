"""Run every benchmark, draw the plots and print the headline numbers against their targets.

Each benchmark runs as its own subprocess (memory is released between them; one that crashes is
reported and the others still run), with its output in ``<results>/logs/<name>.log``:

* ``bare_reference``: LFW pairs accuracy and speed of the bare loop (quick: 30 pairs per fold, one model);
* ``extract``: ``bench.bench_extract`` on 2,000 lfw_dev photos (quick: 200);
* ``cost``: ``bench.bench_cost``, the extraction cost per photo of each recogniser configuration, timed
  interleaved on 100 lfw_dev photos, 4 rounds (quick: 16 photos, 1 round), against the default before SFace;
* ``index``: ``bench.bench_index`` at 100k, 300k and 1M vectors (quick: 20k, 50k);
* ``match``: ``bench.bench_match`` with a 1M gallery and 10k probes: build_index, match and the full
  de-duplication of the 1M gallery (about 25 minutes here with the default's 256-d vectors, 15 with 128-d
  ones; quick: 50k / 1k, with small
  ``index.flat_max`` and ``index.shard_size`` so that the IVF and sharded build paths run).

Then ``bench.plots`` draws the PNGs, a table of headline numbers with their targets is printed and
``summary.json`` is written. The exit status is non-zero when a benchmark crashed (or timed out), not
when a target was missed: a missed target is a result.

Usage: ``python -m bench.run_all [--quick] [--only extract match] [--timeout 7200] [--results-dir DIR]``
(``make bench``). Quick results go to ``bench/results/quick/`` unless ``--results-dir`` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.sampling import machine_info

log = logging.getLogger("bench_all")

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
BENCHMARKS = ("bare_reference", "extract", "cost", "index", "match")
QUICK_MATCH_OVERRIDES = ("index.flat_max=5000", "index.shard_size=10000")


def repo_relative(value: Any) -> Any:
    """``value`` with every path string under the repository written relative to it (results name no machine)."""
    if isinstance(value, dict):
        return {k: repo_relative(v) for k, v in value.items()}
    if isinstance(value, list):
        return [repo_relative(v) for v in value]
    if isinstance(value, str) and value.startswith(f"{REPO_ROOT}/"):
        return value[len(str(REPO_ROOT)) + 1:]
    return value


def commands(quick: bool, results_dir: Path) -> dict[str, list[str]]:
    """The command line of each benchmark."""
    py = sys.executable
    out = {name: results_dir / f"{name}.json" for name in BENCHMARKS}
    sizes = ["20000", "50000"] if quick else ["100000", "300000", "1000000"]
    match_args = ["--gallery", "50000", "--probes", "1000"] if quick else ["--gallery", "1000000", "--probes", "10000"]
    if quick:
        match_args += [arg for o in QUICK_MATCH_OVERRIDES for arg in ("--set", o)]
    bare_args = ["--per-fold", "30", "--recognisers", "mobilefacenet_128d"] if quick else ["--pipeline"]
    extract_args = ["--photos", "200", "--warmup", "16"] if quick else ["--photos", "2000"]
    cost_args = ["--photos", "16", "--rounds", "1"] if quick else ["--photos", "100", "--rounds", "4"]
    return {
        "bare_reference": [py, "-m", "bench.bare_reference", *bare_args, "--out", str(out["bare_reference"])],
        "extract": [py, "-m", "bench.bench_extract", *extract_args, "--out", str(out["extract"])],
        "cost": [py, "-m", "bench.bench_cost", *cost_args, "--out", str(out["cost"])],
        "index": [py, "-m", "bench.bench_index", "--sizes", *sizes, "--out", str(out["index"])],
        "match": [py, "-m", "bench.bench_match", *match_args, "--out", str(out["match"])],
    }


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End a benchmark's process group: SIGTERM, then SIGKILL after 30 s."""
    for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_one(name: str, cmd: list[str], results_dir: Path, timeout: float | None) -> dict[str, Any]:
    """Run one benchmark subprocess with its output in a log file; its status, exit code and wall time."""
    logs = results_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    log.info("%s: %s (log %s)", name, " ".join(cmd[1:]), log_path)
    start = time.perf_counter()
    with log_path.open("w") as fh:
        # A session of its own, so that a timeout ends the benchmark's Spark JVM and workers with it.
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=timeout)
            status = "ok" if rc == 0 else "crashed"
        except subprocess.TimeoutExpired:
            rc, status = None, "timed_out"
            stop_group(proc)
    wall = time.perf_counter() - start
    if status == "ok" and not (results_dir / f"{name}.json").is_file():
        status = "crashed"
    if status != "ok":
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        log.error("%s %s after %.0f s (rc %s); last lines:\n%s", name, status, wall, rc, "\n".join(tail))
    else:
        log.info("%s finished in %.0f s", name, wall)
    return {"status": status, "rc": rc, "wall_s": round(wall, 1), "log": str(log_path), "command": cmd[1:]}


def _row(bench: str, measure: str, value: Any, target: str = "-", met: bool | None = None) -> dict[str, Any]:
    return {"benchmark": bench, "measure": measure, "value": value, "target": target, "met": met}


def _match_rows(match: dict[str, Any]) -> list[dict[str, Any]]:
    """Match and dedup wall times against their targets, recall against exact search, rank-1 rate, memory."""
    rows: list[dict[str, Any]] = []
    for r in match["runs"]:
        size, t = f"{r['gallery']:,} x {r['probes']:,}", r["targets"]
        note = "" if t["applies"] else " (target is for 1M x 10k)"
        rows.append(_row("match", f"{size}: match wall s{note}", r["match"]["wall_s"], f"<= {t['match_s']:.0f}",
                         t["match_met"]))
        dedup = r.get("dedup")
        if dedup:
            rows.append(_row("match", f"{size}: dedup wall s{note}", dedup["wall_s"], f"<= {t['dedup_s']:.0f}",
                             t["dedup_met"]))
        def recall(vs_exact: dict[str, Any]) -> str:
            ci = vs_exact.get("recall_ci95")
            return f"{vs_exact['recall@10']}" + (f" [{ci[0]}, {ci[1]}]" if ci else "")

        dedup_recall = recall(dedup["vs_exact"]) if dedup else "not run"
        rows.append(_row("match", f"{size}: recall@10 vs exact match / dedup",
                         f"{recall(r['match']['vs_exact'])} / {dedup_recall}"))
        rank1 = r["match"]["sanity_1n"]["mated_rank1_rate"]
        rows.append(_row("match", f"{size}: mated rank-1 identity rate", rank1))
        dedup_mem = dedup["memory"]["peak_total_gib"] if dedup else "not run"
        rows.append(_row("match", f"{size}: peak RSS match / dedup (GiB)",
                         f"{r['match']['memory']['peak_total_gib']} / {dedup_mem}"))
    return rows


def _cost_rows(cost: dict[str, Any]) -> list[dict[str, Any]]:
    """Each recogniser configuration's ms/photo and its ratio to the baseline; the default's against its target."""
    rows = []
    for name, p in cost["pipelines"].items():
        target = f"<= {cost['target_ratio']}" if name == "default" else "-"
        rows.append(_row("cost", f"{name} ms/photo (1 thread; x {cost['baseline']})",
                         f"{p['ms_per_photo']['total_ms_per_photo']:.1f} ({p['ratio_to_baseline']}x)", target,
                         cost["target_met"] if name == "default" else None))
    rows.append(_row("cost", "  load avg 1m start / end",
                     f"{cost['load_avg_1m']['start']} / {cost['load_avg_1m']['end']}"))
    return rows


def headlines(results_dir: Path, fresh: set[str]) -> list[dict[str, Any]]:
    """Headline numbers of whatever results exist, each with its target (if any) and whether it was met.

    Rows of a benchmark not in ``fresh`` (not run now, or crashed) come from an earlier run and say so.
    """

    def load(name: str) -> Any:
        path = results_dir / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    rows: list[dict[str, Any]] = []
    if (bare := load("bare_reference")) and (ref := bare.get("bare/mobilefacenet_128d")):
        rows.append(_row("bare_reference", "LFW accuracy mobilefacenet_128d", round(ref["accuracy"], 4)))
        rows.append(_row("bare_reference", "bare photos/s (1 thread)", round(ref["photos_per_s"], 1)))
    if ext := load("extract"):
        target = f">= {ext['target_ratio']}"
        rows.append(_row("extract", f"Spark per-core / bare photos/s ({ext['photos']} photos)",
                         ext["ratio_per_core"], target, ext["target_met"]))
        rows.append(_row("extract", "  bare / Spark per core photos/s",
                         f"{ext['bare']['photos_per_s']} / {ext['spark']['photos_per_s_per_core']}"))
        if "ratio_per_core_udf_only" in ext:
            rows.append(_row("extract", "  transform alone (noop sink) / bare", ext["ratio_per_core_udf_only"]))
        rows.append(_row("extract", "  ratio per CPU-second", ext.get("ratio_per_cpu_s")))
        mem = ext["spark"]["memory"]
        rows.append(_row("extract", "  peak RSS worker max / JVM (GiB)",
                         f"{mem['peak_worker_max_gib']} / {mem['peak_jvm_gib']}"))
        rows.append(_row("extract", "  load avg 1m start / end",
                         f"{ext['load_avg_1m']['start']} / {ext['load_avg_1m']['end']}"))
    if cost := load("cost"):
        rows += _cost_rows(cost)
    if idx := load("index"):
        goal = idx.get("target_recall", 0.98)
        for r in idx["results"]:
            recall = r.get("knn_recall@10")
            what = f"{r['size']:,} {r['index']}: recall@10 at nprobe {r['knn_nprobe']}, {r['knn_qps']} q/s"
            rows.append(_row("index", f"{what} ({r['knn_speedup']}x exact)", recall, f">= {goal}",
                             None if recall is None else recall >= goal))
    if match := load("match"):
        rows += _match_rows(match)
    for r in rows:
        if r["benchmark"] not in fresh:
            r["benchmark"] += " (earlier run)"
    return rows


def print_table(status: dict[str, dict[str, Any]], rows: Sequence[dict[str, Any]]) -> None:
    """The benchmarks' outcome, then the headline table."""
    for name, st in status.items():
        print(f"{name:15s} {st['status']:10s} {st['wall_s']:8.0f} s   {st['log']}")
    widths = [max([len(str(r[k])) for r in rows] + [len(k)]) for k in ("benchmark", "measure", "value", "target")]
    header = ("benchmark", "measure", "value", "target", "met")
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, [*widths, 3], strict=True)))
    for r in rows:
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        cells = [str(r[k]) for k in ("benchmark", "measure", "value", "target")]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)), met)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: non-zero when a benchmark crashed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that everything runs")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--timeout", type=float, default=None, help="seconds per benchmark (default: none)")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="default bench/results (quick: bench/results/quick)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    results_dir = (args.results_dir or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)).resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    machine = machine_info()
    cmds = commands(args.quick, results_dir)
    status = {name: run_one(name, cmds[name], results_dir, args.timeout) for name in BENCHMARKS if name in args.only}
    from bench.plots import draw_all

    try:
        plots = draw_all(results_dir)
    except Exception as exc:  # the plots must not hide the benchmarks' results
        log.exception("plots failed")
        plots = {"error": f"{type(exc).__name__}: {exc}"}
    rows = headlines(results_dir, {name for name, st in status.items() if st["status"] == "ok"})
    print_table(status, rows)
    summary = {
        "mode": "quick" if args.quick else "full", "started_at": started,
        "ended_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine_at_start": machine, "machine_at_end": machine_info(),
        "benchmarks": status, "headlines": rows, "plots": plots,
    }
    (results_dir / "summary.json").write_text(json.dumps(repo_relative(summary), indent=2) + "\n")
    print(f"\nwrote {results_dir / 'summary.json'}")
    return 1 if any(s["status"] != "ok" for s in status.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
