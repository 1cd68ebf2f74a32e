"""Extraction cost per photo of each recogniser configuration the evaluation measures, timed interleaved.

Every extraction pipeline of ``evaluation_configs(cfg, ["reference", "sface_mix", "default"])`` (what
``jobs.extract`` builds for it: decode, YuNet, alignment, quality, each member's embedding with its own flip,
one thread) runs on the same lfw_dev photos, one pipeline after the other, for several rounds; each keeps its
fastest round. Timed in turn like this, a change of load on a shared machine hits every pipeline alike, which
timing one configuration after another (the evaluation's own ``cost``) does not. Issue 16's budget: the default
at most 3x the default before SFace (``mfn_flip``: MobileFaceNet with flip at the same detector size).

Usage: ``python -m bench.bench_cost [--photos 100] [--rounds 4] [--out bench/results/cost.json]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.bench_extract import select_photos
from bench.sampling import machine_info
from facelink.config import Config, load_config
from facelink.evaluation.embeddings import measure_cost
from facelink.evaluation.techniques import EvalConfig, evaluation_configs

log = logging.getLogger("bench_cost")
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "cost.json"
BASELINE = "mfn_flip"
TARGET_RATIO = 3.0


def pipelines(configs: Sequence[EvalConfig]) -> dict[str, EvalConfig]:
    """One configuration per distinct extraction (configurations differing only in scoring share one)."""
    out: dict[str, EvalConfig] = {}
    seen: set[tuple[str, ...]] = set()
    for c in configs:
        key = tuple(v.label for v in c.variants)
        if key not in seen:
            seen.add(key)
            out[c.name] = c
    return out


def interleaved(cfg: Config, chosen: dict[str, EvalConfig], photos: Sequence[bytes], rounds: int) -> dict[str, Any]:
    """Each pipeline's per-round totals and its fastest round's stage times (ms per photo)."""
    best: dict[str, dict[str, float]] = {}
    totals: dict[str, list[float]] = {name: [] for name in chosen}
    for r in range(rounds):
        for name, config in chosen.items():
            got = measure_cost(cfg, config.variants, photos, repeats=1)
            totals[name].append(got["total_ms_per_photo"])
            if name not in best or got["total_ms_per_photo"] < best[name]["total_ms_per_photo"]:
                best[name] = got
        log.info("round %d: %s (load %.1f)", r + 1,
                 ", ".join(f"{n} {totals[n][-1]:.1f}" for n in chosen), os.getloadavg()[0])
    return {"best": best, "rounds": totals}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load_config("local", args.overrides)
    lfw = Path(cfg.resolve(cfg.paths.data_dir)) / "lfw_dev"
    paths, _ = select_photos(lfw, args.photos)
    photos = [(lfw / p).read_bytes() for p in paths]
    chosen = pipelines(evaluation_configs(cfg, ["reference", "sface_mix", "default"], ()))
    if BASELINE not in chosen:
        raise SystemExit(f"{BASELINE} is not among the pipelines ({sorted(chosen)}): is the default MobileFaceNet?")
    start = time.perf_counter()
    load_start = os.getloadavg()[0]
    timed = interleaved(cfg, chosen, photos, args.rounds)
    base = timed["best"][BASELINE]["total_ms_per_photo"]
    report = {
        "machine": {**machine_info(), "platform": platform.platform()},
        "photos": len(photos), "rounds": args.rounds, "threads": 1, "baseline": BASELINE,
        "load_avg_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "wall_s": round(time.perf_counter() - start, 1),
        "pipelines": {
            name: {"variants": [v.label for v in c.variants], "ms_per_photo": timed["best"][name],
                   "round_totals_ms": [round(t, 2) for t in timed["rounds"][name]],
                   "ratio_to_baseline": round(timed["best"][name]["total_ms_per_photo"] / base, 2)}
            for name, c in chosen.items()
        },
        "target_ratio": TARGET_RATIO,
    }
    default_ratio = report["pipelines"]["default"]["ratio_to_baseline"]
    report["target_met"] = default_ratio <= TARGET_RATIO
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, p in report["pipelines"].items():
        print(f"{name:16s} {p['ms_per_photo']['total_ms_per_photo']:8.1f} ms/photo  {p['ratio_to_baseline']:.2f}x "
              f"{BASELINE}  {' + '.join(p['variants'])}")
    print(f"default / {BASELINE}: {default_ratio}x (target <= {TARGET_RATIO}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
