"""Write the HTML review report of a match run and a de-duplication run: CANDIDATES for trained human review.

The report (``<lake.root>/reports/<run_id>/index.html``, with its thumbnails and charts in the same folder)
shows the accountability of each run (operator, purpose, authority, model id, index version, calibration
version and band thresholds, from ``audit``), the counts of the latest run of every job (``runs``), the newest
data-quality results (``dq_results``, when present), score histograms of the candidates, and every ``strong``
probe candidate and every duplicate cluster with the two photos side by side as small thumbnails, the score,
the estimated FMR and FPIR, the band and both faces' quality measurements. Nothing here identifies anyone:
a reviewer decides. By default the latest succeeded match and dedup runs are reported.

Run: ``python -m jobs.report --env local [--match-run-id R] [--dedup-run-id D] [--max-items 200]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.lake.fs import is_local, lake_fs, lake_uri, local_path
from facelink.lake.runs import Accountability, RunRecorder, new_run_id
from facelink.lake.tables import read_table, table_exists
from facelink.progress import Progress
from facelink.report import candidates as cand
from facelink.report.charts import score_histogram_png
from facelink.report.data import (
    RunAccount,
    dq_rows,
    latest_run_id,
    require_run,
    review_counts,
    run_account,
    scores_by_band,
    stage_rows,
)
from facelink.report.html import ReportContent, Thumb, render_report
from facelink.report.publish import publish_folder, report_dir
from facelink.report.thumbs import check_side, transform_thumbnails

log = logging.getLogger(__name__)
JOB = "report"
OPTIONAL_TABLES = ("matches", "duplicate_candidates", "duplicate_clusters", "faces", "photos", "dq_results",
                   "reviews")


@dataclass(frozen=True)
class ReportOptions:
    """How much one report shows.

    Attributes:
        max_items: most strong candidates and most clusters shown (best scores first).
        pairs_per_cluster: most pairs shown per cluster.
        thumb_side: longest thumbnail side in pixels (16..320).
        progress_every_s: seconds between two progress lines while thumbnails are written.
    """

    max_items: int = 200
    pairs_per_cluster: int = 10
    thumb_side: int = 160
    progress_every_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.pairs_per_cluster < 1:
            raise ValueError("max_items and pairs_per_cluster must be >= 1")
        check_side(self.thumb_side)


@dataclass(frozen=True)
class ReportResult:
    run_id: str
    path: str
    match_run_id: str | None
    dedup_run_id: str | None
    strong_shown: int
    strong_total: int
    clusters_shown: int
    clusters_total: int
    thumbnails: int
    thumbnail_errors: int


def pick_run(spark: SparkSession, cfg: Config, job: str, run_id: str | None) -> str | None:
    """``run_id`` checked to be a succeeded run of ``job``, or the latest one when not given."""
    if run_id:
        require_run(spark, cfg, job, run_id)
        return run_id
    return latest_run_id(spark, cfg, job)


def run(spark: SparkSession, cfg: Config, run_id: str | None = None, match_run_id: str | None = None,
        dedup_run_id: str | None = None, options: ReportOptions | None = None) -> ReportResult:
    """Build the report of a match run and a dedup run (default: the latest) and publish it under the lake."""
    opts = options or ReportOptions()
    run_id = run_id or new_run_id(JOB)
    with RunRecorder(spark, cfg, JOB, run_id) as rec:
        for table in ("runs", "audit", *OPTIONAL_TABLES):
            if table_exists(spark, cfg, table):
                rec.read(table)
        match_run_id = pick_run(spark, cfg, "match", match_run_id)
        dedup_run_id = pick_run(spark, cfg, "dedup", dedup_run_id)
        match_acc = run_account(spark, cfg, match_run_id) if match_run_id else None
        dedup_acc = run_account(spark, cfg, dedup_run_id) if dedup_run_id else None
        source = match_acc or dedup_acc
        rec.model_id, rec.index_version = (source.model_id, source.index_version) if source else (None, None)
        rec.detail.update(match_run_id=match_run_id, dedup_run_id=dedup_run_id)

        got = gather(spark, cfg, run_id, match_run_id, dedup_run_id, match_acc, dedup_acc, opts)
        staging = Path(tempfile.mkdtemp(prefix=f"facelink-{run_id}-"))
        staging.chmod(0o755)  # mkdtemp makes it private; the published folder is for reviewers to open
        try:
            thumbs = write_thumbnails(spark, cfg, got.photo_ids, staging / "thumbs", opts)
            charts = write_charts(spark, cfg, staging / "charts", match_acc, dedup_acc, got)
            content = dataclasses.replace(got.content, thumbs=thumbs, charts=charts, dq_docs=dq_docs_link(cfg))
            (staging / "index.html").write_text(render_report(content), encoding="utf-8")
            folder = publish_folder(lake_fs(cfg), staging, report_dir(cfg.lake_root, run_id))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        errors = sum(1 for t in thumbs.values() if t.path is None)
        result = ReportResult(run_id, f"{folder}/index.html", match_run_id, dedup_run_id, len(content.strong),
                              content.strong_total, len(content.clusters), content.clusters_total,
                              len(thumbs) - errors, errors)
        rec.counts.update(strong_shown=result.strong_shown, strong_total=result.strong_total,
                          clusters_shown=result.clusters_shown, clusters_total=result.clusters_total,
                          thumbnails=result.thumbnails, thumbnail_errors=errors)
        rec.detail.update(report=result.path)
        return result


@dataclass(frozen=True)
class Gathered:
    """What :func:`gather` read: the page's content without charts and thumbnails, and what those need."""

    content: ReportContent
    photo_ids: set[str]
    pair_scores: dict[str, list[float]]


def gather(spark: SparkSession, cfg: Config, run_id: str, match_run_id: str | None, dedup_run_id: str | None,
           match_acc: RunAccount | None, dedup_acc: RunAccount | None, opts: ReportOptions) -> Gathered:
    """Read everything the page shows (charts and thumbnails excepted)."""
    reviews = review_counts(spark, cfg)
    strong: list[Any] = []
    strong_total = 0
    if match_run_id:
        rows, strong_total = cand.strong_matches(spark, cfg, match_run_id, opts.max_items)
        model = match_acc.model_id if match_acc and match_acc.model_id else (rows[0]["model_id"] if rows else "")
        faces, _ = cand.face_rows(spark, cfg, model, [r[c] for r in rows for c in ("probe_photo_id",
                                                                                    "candidate_photo_id")])
        strong = cand.match_items(rows, faces, reviews, match_acc.fpir_floor if match_acc else None)
    clusters: list[Any] = []
    clusters_total = 0
    pair_scores: dict[str, list[float]] = {}
    if dedup_run_id:
        members, pairs = cand.cluster_pairs(spark, cfg, dedup_run_id)
        for p in pairs:
            pair_scores.setdefault(p["band"], []).append(float(p["score"]))
        model = dedup_acc.model_id if dedup_acc and dedup_acc.model_id else (pairs[0]["model_id"] if pairs else "")
        faces, primary = cand.face_rows(spark, cfg, model, [p[c] for p in pairs for c in ("photo_id_a",
                                                                                           "photo_id_b")])
        floors = (dedup_acc.fmr_floor, dedup_acc.fpir_floor) if dedup_acc else (None, None)
        clusters, clusters_total = cand.cluster_items(members, pairs, faces, primary, reviews, opts.max_items,
                                                      opts.pairs_per_cluster, floors)
    latest, recent = stage_rows(spark, cfg)
    who = Accountability.from_config(cfg)
    content = ReportContent(run_id, dt.datetime.now(dt.UTC), who.operator, cfg.lake_root, match_run_id, dedup_run_id,
                            match_acc, dedup_acc, latest, recent, dq_rows(spark, cfg), [], strong, strong_total,
                            clusters, clusters_total)
    photo_ids = {p.left.photo_id for p in strong} | {p.right.photo_id for p in strong}
    for cl in clusters:
        photo_ids |= {p.left.photo_id for p in cl.pairs} | {p.right.photo_id for p in cl.pairs}
    return Gathered(content, photo_ids, pair_scores)


def write_thumbnails(spark: SparkSession, cfg: Config, photo_ids: set[str], folder: Path,
                     opts: ReportOptions) -> dict[str, Thumb]:
    """Thumbnail every photo in ``photo_ids`` (on the executors) into ``folder``; photo id -> thumbnail."""
    folder.mkdir(parents=True, exist_ok=True)
    if not photo_ids:
        return {}
    keys = spark.createDataFrame([(p,) for p in sorted(photo_ids)], "photo_id string")
    photos = (read_table(spark, cfg, "photos").select("photo_id", "content")
              .join(F.broadcast(keys), "photo_id", how="left_semi").dropDuplicates(["photo_id"]))
    thumbs: dict[str, Thumb] = {}
    rows = transform_thumbnails(photos, opts.thumb_side, max_pixels=cfg.ingest.max_pixels).toLocalIterator()
    with Progress("report thumbnails", total=len(photo_ids), every_s=opts.progress_every_s, logger=log) as prog:
        for row in rows:
            if row["thumb"] is None:
                thumbs[row["photo_id"]] = Thumb(None, None, None, row["error"])
            else:
                name = f"{row['photo_id'][:32]}.jpg"
                (folder / name).write_bytes(bytes(row["thumb"]))
                thumbs[row["photo_id"]] = Thumb(f"thumbs/{name}", row["photo_width"], row["photo_height"])
            prog.advance()
    for missing in photo_ids - thumbs.keys():
        thumbs[missing] = Thumb(None, None, None, "photo not in the archive (erased?)")
    return thumbs


def write_charts(spark: SparkSession, cfg: Config, folder: Path, match_acc: RunAccount | None,
                 dedup_acc: RunAccount | None, got: Gathered) -> list[tuple[str, str]]:
    """Score histograms of the match run's candidates and of the pairs in the dedup run's clusters."""
    folder.mkdir(parents=True, exist_ok=True)
    charts = []
    match_run_id, dedup_run_id = got.content.match_run_id, got.content.dedup_run_id
    if match_run_id:
        matches = read_table(spark, cfg, "matches").filter(F.col("run_id") == match_run_id)
        png = score_histogram_png(scores_by_band(matches), match_acc.band_thresholds if match_acc else {},
                                  f"Probe candidates of match run {match_run_id} (all ranks)")
        (folder / "match_scores.png").write_bytes(png)
        charts.append((f"Score histogram of match run {match_run_id}", "charts/match_scores.png"))
    if dedup_run_id:
        png = score_histogram_png(got.pair_scores, dedup_acc.band_thresholds if dedup_acc else {},
                                  f"Candidate pairs linking the clusters of dedup run {dedup_run_id}")
        (folder / "dedup_scores.png").write_bytes(png)
        charts.append((f"Score histogram of dedup run {dedup_run_id}", "charts/dedup_scores.png"))
    return charts


def dq_docs_link(cfg: Config) -> str | None:
    """A link to the Great Expectations Data Docs of the lake, when they were built (a ``file:`` URI on a
    local lake, the object's URI on an object store)."""
    root = local_path(cfg.lake_root) if is_local(cfg.lake_root) else None
    if root is None:
        uri = lake_uri(cfg, "dq_docs", "index.html")
        return uri if lake_fs(cfg).is_file(uri) else None
    index = root / "dq_docs" / "index.html"
    return index.resolve().as_uri() if index.is_file() else None


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _thumb_side(text: str) -> int:
    try:
        return check_side(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    from facelink.cli import RUN_ID, base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    parser.add_argument("--match-run-id", default=None, type=RUN_ID, help="match run to report (default: the latest)")
    parser.add_argument("--dedup-run-id", default=None, type=RUN_ID, help="dedup run to report (default: the latest)")
    parser.add_argument("--max-items", type=_at_least_one, default=200,
                        help="most strong candidates and most clusters shown (best scores first)")
    parser.add_argument("--thumb-side", type=_thumb_side, default=160, help="thumbnail size in pixels (16..320)")

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        opts = ReportOptions(max_items=args.max_items, thumb_side=args.thumb_side)
        res = run(spark, cfg, args.run_id, args.match_run_id, args.dedup_run_id, opts)
        print(f"report {res.run_id}: {res.path}\n  match run {res.match_run_id}: {res.strong_shown} of "
              f"{res.strong_total} strong candidates; dedup run {res.dedup_run_id}: {res.clusters_shown} of "
              f"{res.clusters_total} clusters; {res.thumbnails} thumbnails ({res.thumbnail_errors} failed).\n"
              "  Candidates are for trained human review, not identifications.")

    return run_job(JOB, job, parser, argv, spark)


if __name__ == "__main__":
    raise SystemExit(main())
