"""The evaluation's outputs: ``evaluations`` rows, ``report.json``, ``summary.md``, plots and thumbnails.

Every figure carries the configuration it was measured under, the model id(s), its threshold and the
digest of the data it was measured on. The report folder is ``<lake.root>/reports/evaluation/<run_id>/``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facelink.metrics import plot_det, plot_roc

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
SUMMARY_MD = "summary.md"


def far_label(rate: float) -> str:
    """``1e-2`` for 0.01, ``1e-3`` for 0.001; other rates as written (``0.003``)."""
    exp = math.log10(rate)
    return f"1e{round(exp)}" if abs(exp - round(exp)) < 1e-9 else f"{rate:g}"


def fpir_label(rate: float) -> str:
    return f"{rate:g}"


def row(protocol: str, config: str, metric: str, value: float | None, *, group: str = "all",
        ci: Sequence[float] | None = None, threshold: float | None = None, n: int | None = None) -> dict[str, Any]:
    """One ``evaluations`` figure (run, model and digest columns are added by :func:`finish_rows`)."""
    return {"protocol": protocol, "config_name": config, "metric": metric, "group_name": group,
            "value": _num(value), "ci_low": _num(ci[0]) if ci else None, "ci_high": _num(ci[1]) if ci else None,
            "threshold": _num(threshold), "n": n}


def finish_rows(rows: list[dict[str, Any]], run_id: str, model_ids: Mapping[str, str], digests: Mapping[str, str],
                evaluated_at: dt.datetime) -> list[dict[str, Any]]:
    """Add run id, model id (per configuration), index version and data digest (per protocol) to each row."""
    out = []
    for r in rows:
        out.append({"run_id": run_id, **r, "model_id": model_ids[r["config_name"]], "index_version": "exact",
                    "data_digest": digests[r["protocol"]], "evaluated_at": evaluated_at})
    return out


def _num(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def verification_rows(config: str, m: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = [row("verification", config, "accuracy", m["accuracy"], ci=m["accuracy_ci"], n=m["n"]),
            row("verification", config, "accuracy_std", m["accuracy_std"], n=m["n"]),
            row("verification", config, "comparisons_failed", m["failures"], n=m["n"])]
    for target, got in m["tar_at_far"].items():
        rows.append(row("verification", config, f"tar_at_far_{far_label(target)}", got["tar"], ci=got["ci"],
                        threshold=got["threshold"], n=m["n_mate"]))
    return rows


def identification_rows(config: str, m: Mapping[str, Any], protocol: str = "identification",
                        prefix: str = "") -> list[dict[str, Any]]:
    rows = []
    for target, got in m["fnir_at_fpir"].items():
        rows.append(row(protocol, config, f"{prefix}fnir_at_fpir_{fpir_label(target)}", got["fnir"], ci=got["ci"],
                        threshold=got["threshold"], n=m["n_mated"]))
        rows.append(row(protocol, config, f"{prefix}fpir_observed_at_{fpir_label(target)}", got["fpir"],
                        threshold=got["threshold"], n=m["n_nonmated"]))
    for rank, got in m["rank_miss"].items():
        rows.append(row(protocol, config, f"{prefix}rank{rank}_miss", got["value"], ci=got["ci"], n=m["n_mated"]))
    return rows


def dedup_rows(config: str, m: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for target, got in m["recall_at_fpir"].items():
        label = fpir_label(target)
        rows.append(row("dedup", config, f"dup_recall_at_fpir_{label}", got["recall"], ci=got["ci"],
                        threshold=got["threshold"], n=m["n_pairs"]))
        rows.append(row("dedup", config, f"dup_found_at_fpir_{label}", got["found"], threshold=got["threshold"],
                        n=m["n_pairs"]))
        if "false_pairs" in got:
            rows.append(row("dedup", config, f"dup_false_pairs_at_fpir_{label}", got["false_pairs"],
                            threshold=got["threshold"]))
    return rows


def group_rows(config: str, g: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for label, rates in g["groups"].items():
        rows.append(row("verification", config, "fmr", rates["fmr"], group=label, threshold=g["threshold"],
                        n=rates["n_nonmate"]))
        rows.append(row("verification", config, "fnmr", rates["fnmr"], group=label, threshold=g["threshold"],
                        n=rates["n_mate"]))
    for rate in ("fmr", "fnmr"):
        rows.append(row("verification", config, f"{rate}_worst_best_ratio", g[f"{rate}_ratio"],
                        threshold=g["threshold"]))
    return rows


def calibration_rows(config: str, c: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for fold, per_target in c["per_fold"].items():
        for target, got in per_target.items():
            rows.append(row("calibration", config, f"observed_fmr_at_{far_label(target)}", got["observed_fmr"],
                            group=f"fold{fold}", threshold=got["threshold"], n=got["n_nonmate"]))
    for target, ratio in c["worst_ratio"].items():
        rows.append(row("calibration", config, f"fmr_ratio_worst_at_{far_label(target)}", ratio))
    return rows


def fpir_check_rows(config: str, check: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Observed FPIR at each band and gallery size on held-back folds
    (:func:`facelink.search.fpir.heldout_fpir_check`)."""
    return [row("calibration", config, f"fpir_observed_{r['band']}_{fpir_label(r['target_fpir'])}"
                f"@gallery_{r['gallery_size']}", r["observed_fpir"], ci=r["ci"], n=r["searches"])
            for r in check["rows"]]


def fpir_check_lines(check: Mapping[str, Any]) -> list[str]:
    """Markdown table of a held-back FPIR check."""
    lines = ["| band | target FPIR | gallery | observed FPIR [95% CI] | observed / target [95% CI] | per fold "
             "| notes |", "|---|---|---|---|---|---|---|"]
    for r in check["rows"]:
        lo, hi = r["ci"]
        rlo, rhi = r["ratio_ci"]
        lines.append(f"| {r['band']} | {r['target_fpir']:g} | {r['gallery_size']:,} | {r['observed_fpir']:.4f} "
                     f"[{lo:.4f}, {hi:.4f}] | {r['ratio']:.2f} [{rlo:.2f}, {rhi:.2f}] | "
                     f"{', '.join(f'{v:.2f}' for v in r['per_fold_ratio'])} | {'; '.join(r['notes'])} |")
    return lines


def cost_rows(config: str, cost: Mapping[str, float]) -> list[dict[str, Any]]:
    n = int(cost.get("photos", 0))
    return [row("cost", config, f"{stage}_ms_per_photo", cost[f"{stage}_ms_per_photo"], n=n)
            for stage in ("total", "detect", "embed") if f"{stage}_ms_per_photo" in cost]


# --------------------------------------------------------------------------------------------- files


def write_plots(out_dir: Path, curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]) -> list[str]:
    """DET and ROC plots: ``curves[kind][config] = (x, y)`` for kind in verification_det / _roc / identification_det."""
    written = []
    titles = {"verification_det": ("1:1 verification DET", plot_det),
              "verification_roc": ("1:1 verification ROC", plot_roc),
              "identification_det": ("1:N identification DET (FPIR vs FNIR)", plot_det)}
    for kind, per_config in curves.items():
        if per_config and kind in titles:
            title, fn = titles[kind]
            written.append(str(fn(per_config, out_dir / f"{kind}.png", title)))
    return written


def write_json(out_dir: Path, report: Mapping[str, Any]) -> Path:
    path = out_dir / REPORT_JSON
    path.write_text(json.dumps(_jsonable(report), indent=2, sort_keys=True) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _ci(ci: Sequence[float] | None) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _delta_tables(report: Mapping[str, Any], fpir: Sequence[float]) -> list[str]:
    """Paired differences against each baseline the report holds (``vs_reference``, ``vs_mfn_flip``,
    ``vs_mfn_flip_all_faces``, ``vs_mfn_flip_quality_only``)."""
    lines: list[str] = []
    for key in ("vs_reference", "vs_mfn_flip", "vs_mfn_flip_all_faces", "vs_mfn_flip_quality_only"):
        deltas = report.get(key)
        if not deltas:
            continue
        head = ["config"] + [f"ΔFNIR@FPIR {t:g} [95% CI]" for t in fpir] + [f"Δdup recall@FPIR {fpir[0]:g} [95% CI]"]
        lines += [f"### Paired differences {key.replace('_', ' ', 1)}", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for c, d in deltas.items():
            cells = [c] + [f"{d['fnir'][t]['delta']:+.3f} {_ci(d['fnir'][t]['ci'])}" for t in fpir]
            dup = d.get("dup_recall", {}).get(fpir[0])
            cells.append(f"{dup['delta']:+.3f} {_ci(dup['ci'])}" if dup else "")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def summary_markdown(report: Mapping[str, Any]) -> str:  # noqa: C901 - one section per protocol
    """A short Markdown summary: one table row per configuration, then calibration, digests and checks."""
    lines = [f"# Evaluation {report['run_id']}", "",
             f"Labelled set `{report['labelled_set']['name']}` ({report['labelled_set']['photos']} photos), "
             f"evaluated at {report['evaluated_at']}.", ""]
    configs = list(report["configs"])
    ident, dedup, verif = report.get("identification", {}), report.get("dedup", {}), report.get("verification", {})
    cost = report.get("cost", {})
    if ident or dedup:
        fp = report["settings"]["fpir_targets"]
        head = ["config"] + [f"FNIR@FPIR {t:g} [95% CI]" for t in fp] + ["rank-1 miss", "rank-10 miss"] + \
               [f"dups found@FPIR {fp[0]:g} [recall CI]", "ms/photo"]
        lines += ["## 1:N identification and planted duplicates", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for c in configs:
            i, d = ident.get(c), dedup.get(c)
            if i is None:
                continue
            cells = [c] + [f"{i['fnir_at_fpir'][t]['fnir']:.3f} {_ci(i['fnir_at_fpir'][t]['ci'])}" for t in fp]
            cells += [f"{i['rank_miss'][r]['value']:.3f}" for r in sorted(i["rank_miss"])]
            if d:
                got = d["recall_at_fpir"][fp[0]]
                cells.append(f"{got['found']}/{d['n_pairs']} {_ci(got['ci'])}")
            else:
                cells.append("")
            cells.append(f"{cost[c]['total_ms_per_photo']:.1f}" if c in cost else "")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += _delta_tables(report, fp)
    if verif:
        far = report["settings"]["far_targets"]
        head = ["config", "accuracy (k-fold)"] + [f"TAR@FAR {far_label(t)} [95% CI]" for t in far] + ["failed"]
        lines += ["## 1:1 verification", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in configs:
            v = verif.get(c)
            if v is None:
                continue
            cells = [c, f"{v['accuracy']:.4f} ± {v['accuracy_std']:.4f}"]
            cells += [f"{v['tar_at_far'][t]['tar']:.4f} {_ci(v['tar_at_far'][t]['ci'])}" for t in far]
            cells.append(str(v["failures"]))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    cal = report.get("calibration", {})
    if cal:
        lines += ["## Calibration on held-back folds (observed FMR / target, worst fold)", ""]
        for c, got in cal.items():
            ratios = ", ".join(f"{far_label(float(t))}: {r:.2f}" for t, r in got["worst_ratio"].items())
            lines.append(f"- {c}: {ratios} -> {'within 2x' if got['within_2x'] else 'NOT within 2x'}")
        lines.append("")
    for c, check in report.get("fpir_check", {}).items():
        if "skipped" in check:
            lines += [f"## FPIR on held-back folds ({c})", "", f"Not measured: {check['skipped']}", ""]
            continue
        lines += [f"## FPIR on held-back folds ({c}): observed against the band targets", "",
                  f"{check['searches']:,} held-back searches ({check['folds']} identity-disjoint folds, "
                  f"{check['repeats']} galleries each, at most {check['per_identity']} photos per person); "
                  f"{'within 2x of every target' if check['within_2x'] else 'NOT within 2x of every target'}.", ""]
        lines += fpir_check_lines(check)
        lines.append("")
    groups = report.get("groups", {})
    if groups:
        lines += ["## Per-group rates (comparisons involving each group)", ""]
        for c, g in groups.items():
            lines.append(f"- {c} at threshold {g['threshold']:.4f}: FNMR worst/best {g['fnmr_worst_group']} / "
                         f"{g['fnmr_best_group']} = {g['fnmr_ratio']:.2f}; FMR worst/best {g['fmr_worst_group']} / "
                         f"{g['fmr_best_group']} = {g['fmr_ratio']:.2f}")
        lines.append("")
    lines += ["## Provenance", ""]
    for protocol, digest in report["digests"].items():
        lines.append(f"- data digest ({protocol}): `{digest}`")
    for c, mid in report["model_ids"].items():
        lines.append(f"- {c}: {mid}; {json.dumps(report['configs'][c])}")
    lines.append("")
    return "\n".join(lines)


def write_summary(out_dir: Path, report: Mapping[str, Any]) -> Path:
    path = out_dir / SUMMARY_MD
    path.write_text(summary_markdown(report))
    return path


def side_by_side(left: Path, right: Path, caption: str, out: Path, height: int = 250) -> Path:
    """Write the two photos side by side, scaled to ``height`` pixels, with a caption strip, as PNG."""
    tiles = []
    for p in (left, right):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            img = np.zeros((height, height, 3), np.uint8)
        scale = height / img.shape[0]
        tiles.append(cv2.resize(img, (max(1, round(img.shape[1] * scale)), height)))
    body = np.hstack([tiles[0], np.full((height, 6, 3), 255, np.uint8), tiles[1]])
    strip = np.full((44, body.shape[1], 3), 255, np.uint8)
    for i, text in enumerate(caption.split("\n")[:2]):
        cv2.putText(strip, text, (4, 18 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.vstack([body, strip]))
    return out
