"""Human review of candidates: named reviewers record decisions; two different reviewers settle a subject.

A *subject* is a duplicate candidate pair (``pair``, by ``pair_id``), a duplicate cluster (``cluster``, by
``cluster_id``) or a match candidate (``match``, by ``<run_id>/<probe_photo_id>/<rank>``). A decision
(``same_person``, ``different_people`` or ``inconclusive``) is appended to the ``reviews`` table with the
subject's source run and record ids; the candidate tables are never edited. Unknown subjects are refused.

The reviewer is who the job runs as, never an argument: the OS account (from the password database), or,
where ``review.trust_orchestrator_identity`` is set, the identity an orchestrator that signs reviewers in
passes as ``FACELINK_IDENTITY`` (the account is recorded beside it in the run's audit detail). Nobody
reviews a candidate of a run they operated (the ``audit.operator`` of its dedup or match run): refused.

Status of a subject, from each reviewer's *latest* decision on the record ids the subject has now (a
decision on a cluster that has since gained or lost a member no longer counts, so the cluster is ``open``
again; reviewer names are compared lower-cased):

* ``disputed``: at least one reviewer says same person and at least one says different people;
* ``confirmed_same`` / ``confirmed_different``: two or more DIFFERENT reviewers agree (one reviewer
  recording the same decision twice confirms nothing);
* ``inconclusive``: two or more different reviewers found it inconclusive, and nobody decided either way;
* ``open``: anything else, including subjects nobody has reviewed yet.

The open queue is the subjects still needing a decision: ``open`` and ``disputed`` ones, disputed first,
then by score. Analysts can run the same queries in any session; register the views once, then run
:data:`OPEN_QUEUE_SQL`::

    from jobs.review import OPEN_QUEUE_SQL, register_views
    register_views(spark, cfg)        # temp views: reviews, duplicate_candidates, duplicate_clusters,
    spark.sql(OPEN_QUEUE_SQL).show()  # matches, review_subjects, review_status

which is::

    SELECT status, subject_type, subject_id, source_run_id, record_ids, band, score,
           n_reviews, n_reviewers, reviewers, decisions, last_reviewed_at
    FROM review_status
    WHERE status IN ('open', 'disputed')
    ORDER BY CASE status WHEN 'disputed' THEN 0 ELSE 1 END, score DESC NULLS LAST, subject_type, subject_id

(:data:`REVIEW_STATUS_SQL` and :data:`REVIEW_SUBJECTS_SQL` define the two views over the same tables, so they
also run against catalog tables of those names.) A subject found in several runs is shown with its latest
run (run ids start with the job name and a UTC timestamp, so they sort in time).

Run: ``python -m jobs.review record --subject-type pair --subject-id <pair_id>
--decision same_person [--note "..."] [--source-run-id RUN]`` and ``python -m jobs.review queue
[--limit 50] [--subject-type pair]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from facelink.config import Config, Identity, current_identity
from facelink.errors import InputError, RefusedError
from facelink.lake.runs import RunRecorder, new_run_id
from facelink.lake.tables import insert_new, read_table
from schemas import get_spec

log = logging.getLogger(__name__)
JOB = "review"

SUBJECT_TYPES = ("pair", "cluster", "match")
DECISIONS = ("same_person", "different_people", "inconclusive")
#: The candidate table each subject type is looked up in.
SUBJECT_TABLES = {"pair": "duplicate_candidates", "cluster": "duplicate_clusters", "match": "matches"}
VIEW_TABLES = ("reviews", "duplicate_candidates", "duplicate_clusters", "matches")

REVIEW_SUBJECTS_SQL = """
SELECT 'pair' AS subject_type, pair_id AS subject_id, max(run_id) AS source_run_id,
       max_by(array(record_id_a, record_id_b), run_id) AS record_ids,
       max_by(band, run_id) AS band, CAST(max_by(score, run_id) AS DOUBLE) AS score
FROM duplicate_candidates
GROUP BY pair_id
UNION ALL
SELECT 'cluster', c.cluster_id, c.run_id, array_sort(collect_list(c.record_id)),
       max_by(c.strongest_link_band, c.strongest_link_score), CAST(max(c.strongest_link_score) AS DOUBLE)
FROM duplicate_clusters c
JOIN (SELECT cluster_id, max(run_id) AS run_id FROM duplicate_clusters GROUP BY cluster_id) latest
  ON c.cluster_id = latest.cluster_id AND c.run_id = latest.run_id
GROUP BY c.cluster_id, c.run_id
UNION ALL
SELECT 'match', concat_ws('/', run_id, probe_photo_id, CAST(rank AS STRING)), run_id,
       array(probe_record_id, candidate_record_id), band, CAST(score AS DOUBLE)
FROM matches
"""

REVIEW_STATUS_SQL = """
WITH current_reviews AS (
  SELECT r.* FROM reviews r
  LEFT JOIN review_subjects s ON r.subject_type = s.subject_type AND r.subject_id = s.subject_id
  WHERE s.record_ids IS NULL OR array_sort(r.record_ids) = array_sort(s.record_ids)
),
latest AS (
  SELECT subject_type, subject_id, reviewer, decision,
         row_number() OVER (PARTITION BY subject_type, subject_id, reviewer
                            ORDER BY reviewed_at DESC, review_id DESC) AS nth
  FROM current_reviews
),
votes AS (
  SELECT subject_type, subject_id,
         count(*) AS n_reviewers,
         array_sort(collect_list(reviewer)) AS reviewers,
         map_from_entries(array_sort(collect_list(struct(reviewer, decision)))) AS decisions,
         count_if(decision = 'same_person') AS n_same,
         count_if(decision = 'different_people') AS n_different,
         count_if(decision = 'inconclusive') AS n_inconclusive
  FROM latest WHERE nth = 1
  GROUP BY subject_type, subject_id
),
history AS (
  SELECT subject_type, subject_id, count(*) AS n_reviews, max(reviewed_at) AS last_reviewed_at,
         max_by(source_run_id, reviewed_at) AS reviewed_run_id, max_by(record_ids, reviewed_at) AS reviewed_records
  FROM reviews
  GROUP BY subject_type, subject_id
),
subjects AS (
  SELECT coalesce(s.subject_type, h.subject_type) AS subject_type,
         coalesce(s.subject_id, h.subject_id) AS subject_id,
         coalesce(s.source_run_id, h.reviewed_run_id) AS source_run_id,
         coalesce(s.record_ids, h.reviewed_records) AS record_ids,
         s.band, s.score, coalesce(h.n_reviews, 0) AS n_reviews, h.last_reviewed_at
  FROM review_subjects s
  FULL OUTER JOIN history h ON s.subject_type = h.subject_type AND s.subject_id = h.subject_id
)
SELECT s.subject_type, s.subject_id, s.source_run_id, s.record_ids, s.band, s.score, s.n_reviews,
       coalesce(v.n_reviewers, 0) AS n_reviewers,
       coalesce(v.reviewers, CAST(array() AS ARRAY<STRING>)) AS reviewers,
       v.decisions, s.last_reviewed_at,
       CASE WHEN v.n_same >= 1 AND v.n_different >= 1 THEN 'disputed'
            WHEN v.n_same >= 2 THEN 'confirmed_same'
            WHEN v.n_different >= 2 THEN 'confirmed_different'
            WHEN v.n_inconclusive >= 2 THEN 'inconclusive'
            ELSE 'open' END AS status
FROM subjects s
LEFT JOIN votes v ON s.subject_type = v.subject_type AND s.subject_id = v.subject_id
"""

OPEN_QUEUE_SQL = """
SELECT status, subject_type, subject_id, source_run_id, record_ids, band, score,
       n_reviews, n_reviewers, reviewers, decisions, last_reviewed_at
FROM review_status
WHERE status IN ('open', 'disputed')
ORDER BY CASE status WHEN 'disputed' THEN 0 ELSE 1 END, score DESC NULLS LAST, subject_type, subject_id
"""


class UnknownSubjectError(InputError):
    """The subject of a review is not in its candidate table (or its id is malformed)."""


@dataclass(frozen=True)
class Subject:
    """What a review is about, as found in the candidate tables."""

    subject_type: str
    subject_id: str
    source_run_id: str
    record_ids: tuple[str, ...]


@dataclass(frozen=True)
class Review:
    """One recorded decision (one ``reviews`` row)."""

    review_id: str
    subject: Subject
    reviewer: str
    decision: str
    note: str | None
    reviewed_at: dt.datetime


def register_views(spark: SparkSession, cfg: Config) -> None:
    """Temp views over the lake's tables: the inputs, ``review_subjects`` and ``review_status``."""
    for name in VIEW_TABLES:
        read_table(spark, cfg, name).createOrReplaceTempView(name)
    spark.sql(REVIEW_SUBJECTS_SQL).createOrReplaceTempView("review_subjects")
    spark.sql(REVIEW_STATUS_SQL).createOrReplaceTempView("review_status")


def review_status(spark: SparkSession, cfg: Config) -> DataFrame:
    """Per subject: record ids, band, score, ``n_reviews``, ``n_reviewers``, ``reviewers``, ``decisions``
    (reviewer -> latest decision) and ``status`` (open | confirmed_same | confirmed_different | disputed |
    inconclusive)."""
    register_views(spark, cfg)
    return spark.table("review_status")


def open_queue(spark: SparkSession, cfg: Config) -> DataFrame:
    """The subjects still needing a decision (:data:`OPEN_QUEUE_SQL`)."""
    register_views(spark, cfg)
    return spark.sql(OPEN_QUEUE_SQL)


def _in_run(rows: DataFrame, source_run_id: str | None) -> DataFrame:
    return rows.filter(F.col("run_id") == F.lit(source_run_id)) if source_run_id else rows


def resolve_subject(spark: SparkSession, cfg: Config, subject_type: str, subject_id: str,
                    source_run_id: str | None = None) -> Subject:
    """Find the subject in its candidate table (its latest run, or ``source_run_id``).

    Raises:
        ValueError: ``subject_type`` is not one of :data:`SUBJECT_TYPES`.
        UnknownSubjectError: no such subject (in that run).
    """
    if subject_type not in SUBJECT_TYPES:
        raise ValueError(f"subject_type: expected one of {SUBJECT_TYPES}, got {subject_type!r}")
    table = SUBJECT_TABLES[subject_type]
    where = f" in run {source_run_id}" if source_run_id else ""
    rows = read_table(spark, cfg, table)
    if subject_type == "pair":
        pairs = _in_run(rows.filter(F.col("pair_id") == subject_id), source_run_id)
        found = pairs.select("run_id", F.array("record_id_a", "record_id_b").alias("ids")).orderBy(
            F.col("run_id").desc()).first()
    elif subject_type == "cluster":
        members = _in_run(rows.filter(F.col("cluster_id") == subject_id), source_run_id)
        found = members.groupBy("run_id").agg(F.array_sort(F.collect_list("record_id")).alias("ids")).orderBy(
            F.col("run_id").desc()).first()
    else:
        parts = subject_id.split("/")
        if len(parts) != 3 or not parts[2].isdigit():
            raise UnknownSubjectError(
                f"match subject id {subject_id!r}: expected <run_id>/<probe_photo_id>/<rank>")
        run_id, photo_id, rank = parts[0], parts[1], int(parts[2])
        if source_run_id and source_run_id != run_id:
            raise UnknownSubjectError(f"match {subject_id!r} belongs to run {run_id}, not {source_run_id}")
        found = rows.filter((F.col("run_id") == run_id) & (F.col("probe_photo_id") == photo_id)
                            & (F.col("rank") == rank)).select(
            "run_id", F.array("probe_record_id", "candidate_record_id").alias("ids")).first()
    if found is None:
        raise UnknownSubjectError(f"unknown {subject_type} {subject_id!r}: not in {table}{where}")
    return Subject(subject_type, subject_id, found["run_id"], tuple(found["ids"]))


def run_operators(spark: SparkSession, cfg: Config, run_id: str) -> set[str]:
    """The operators (lower-cased) that ``audit`` records for the dedup or match run ``run_id``."""
    audit = read_table(spark, cfg, "audit").filter(
        (F.col("run_id") == F.lit(run_id)) & F.col("job").isin("dedup", "match") & F.col("operator").isNotNull())
    return {str(r["operator"]).strip().lower() for r in audit.select("operator").distinct().collect()}


def record_review(
    spark: SparkSession, cfg: Config, reviewer: str | Identity | None, subject_type: str, subject_id: str,
    decision: str, note: str | None = None, source_run_id: str | None = None, run_id: str | None = None,
) -> Review:
    """Append one reviewer's decision on a subject to ``reviews`` (a rerun with the same run id adds nothing).

    Args:
        reviewer: who decides; None: the identity this process runs as (:func:`facelink.config.current_identity`),
            which is what the command line uses. A name given here is trusted as the caller's.

    Raises:
        ValueError: empty reviewer, unknown subject type or decision.
        UnknownSubjectError: the subject is not in its candidate table; nothing is written.
        RefusedError: the reviewer operated the run that produced the subject; nothing is written.
    """
    if reviewer is None:
        reviewer = current_identity(cfg.review.trust_orchestrator_identity)
    identity = reviewer if isinstance(reviewer, Identity) else None
    name = (identity.name if identity else str(reviewer)).strip().lower()
    if not name:
        raise ValueError("reviewer: a reviewer's name is required")
    if decision not in DECISIONS:
        raise ValueError(f"decision: expected one of {DECISIONS}, got {decision!r}")
    run_id = run_id or new_run_id(JOB)
    with RunRecorder(spark, cfg, JOB, run_id) as rec:
        # runs and audit name the subject by pseudonym only (a match subject quotes the probe's photo id)
        rec.subjects.update([subject_id, *subject_id.split("/")[1:2]])
        rec.detail.update(action="record", reviewer=name, subject_type=subject_type, subject_id=subject_id,
                          decision=decision)
        if subject_type in SUBJECT_TABLES:
            rec.read(SUBJECT_TABLES[subject_type])
        subject = resolve_subject(spark, cfg, subject_type, subject_id, source_run_id)
        rec.subjects.update(subject.record_ids)
        if identity is not None:
            rec.detail.update(os_user=identity.os_user, identity_source=identity.source)
        rec.read("audit")
        if name in run_operators(spark, cfg, subject.source_run_id):
            raise RefusedError(f"review refused: {name} operated run {subject.source_run_id}, which produced this "
                               f"{subject_type}; a candidate is reviewed by people other than its operator")
        review = Review(run_id, subject, name, decision, note or None, dt.datetime.now(dt.UTC))
        spec = get_spec("reviews")
        row = (review.review_id, subject.subject_type, subject.subject_id, subject.source_run_id,
               list(subject.record_ids), review.reviewer, review.decision, review.note, review.reviewed_at)
        rec.counts["reviews"] = insert_new(spark, cfg, spec, spark.createDataFrame([row], spec.schema))
        rec.wrote("reviews")
        log.info("review %s: %s says %s on %s %s", run_id, name, decision, subject_type, subject_id)
        return review


def _add_common(sub: argparse.ArgumentParser) -> None:
    """The job-wide options, accepted after the subcommand too (given there, they win)."""
    from facelink.cli import RUN_ID

    sub.add_argument("--env", default=argparse.SUPPRESS)
    sub.add_argument("--conf-dir", default=argparse.SUPPRESS)
    sub.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=argparse.SUPPRESS)
    sub.add_argument("--run-id", default=argparse.SUPPRESS, type=RUN_ID)
    sub.add_argument("--log-level", default=argparse.SUPPRESS)


def format_queue(rows: Sequence[Row]) -> list[str]:
    """Queue rows as lines of a plain table: status, type, band, score, reviews, subject, records, reviewers."""
    lines = [f"{'status':9} {'type':7} {'band':9} {'score':>6} {'n':>2}  subject_id  record_ids  reviewers"]
    for r in rows:
        score = "-" if r["score"] is None else f"{r['score']:.3f}"
        records = ",".join(r["record_ids"] or [])
        reviewers = ",".join(r["reviewers"] or []) or "-"
        lines.append(f"{r['status']:9} {r['subject_type']:7} {r['band'] or '-':9} {score:>6} {r['n_reviews']:>2}  "
                     f"{r['subject_id']}  {records}  {reviewers}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    from facelink.cli import RUN_ID, base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record", help="record one reviewer's decision on a subject")
    rec.add_argument("--subject-type", choices=SUBJECT_TYPES, required=True)
    rec.add_argument("--subject-id", required=True, help="pair_id, cluster_id, or run_id/probe_photo_id/rank")
    rec.add_argument("--decision", choices=DECISIONS, required=True)
    rec.add_argument("--note", default=None)
    rec.add_argument("--source-run-id", default=None, type=RUN_ID,
                     help="the candidate run (default: the latest holding it)")
    queue = commands.add_parser("queue", help="print the open review queue")
    queue.add_argument("--limit", type=int, default=50)
    queue.add_argument("--subject-type", choices=SUBJECT_TYPES, default=None)
    for sub in (rec, queue):
        _add_common(sub)

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        if args.command == "record":
            review = record_review(spark, cfg, None, args.subject_type, args.subject_id, args.decision,
                                   args.note, args.source_run_id, args.run_id)
            print(f"review {review.review_id}: {review.reviewer} -> {review.decision} on "
                  f"{review.subject.subject_type} {review.subject.subject_id} "
                  f"(run {review.subject.source_run_id}, records {', '.join(review.subject.record_ids)})")
            return
        with RunRecorder(spark, cfg, JOB, args.run_id or new_run_id(JOB)) as recorder:
            recorder.detail.update(action="queue")
            for name in VIEW_TABLES:
                recorder.read(name)
            queued = open_queue(spark, cfg)
            if args.subject_type:
                queued = queued.filter(F.col("subject_type") == args.subject_type)
            rows = queued.limit(args.limit).collect()
            recorder.counts["queued_shown"] = len(rows)
        print("\n".join(format_queue(rows)))
        print(f"{len(rows)} subject(s) shown (open or disputed; --limit {args.limit})")

    return run_job(JOB, job, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
