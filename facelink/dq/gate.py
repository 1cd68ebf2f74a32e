"""Data-quality gates: run the GX suites of :mod:`facelink.dq.suites` on Spark DataFrames, keep the results.

One Great Expectations context is made per process (importing GX and building a context is slow) and per
pair of output folders: suites and validation definitions live in memory, validation results are written
as JSON under ``<lake.root>/gx/validations`` and rendered as Data Docs HTML under ``<lake.root>/dq_docs``.
GX writes local files only: on a lake in an object store (``s3a://``) the process works in a local mirror
folder (in the system's temporary folder, filled from the lake's ``gx/validations`` once per process) and
uploads what it wrote through the lake's filesystem seam (``facelink.lake.fs``) after each validation and
Data Docs build. The ``dq_results`` Delta table holds every result either way.

Typical use (what ``jobs.quality`` does)::

    outcomes = validate(spark, cfg, ["photos", "rejects"], run_id, scope_run_id=None, versions=versions)
    write_results(spark, cfg, run_id, outcomes)
    index = build_docs(cfg, run_id)
    report = QualityReport(run_id, None, tuple(outcomes), index)
    report.raise_for_critical()
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
    ExpectationValidationResult,
)
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context import AbstractDataContext
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier
from great_expectations.exceptions import DataContextError
from great_expectations.expectations import Expectation
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from facelink.config import Config, LakeS3Conf
from facelink.dq.suites import CRITICAL, WARNING, Suite, SuiteInputs, suites_for
from facelink.errors import DataQualityError
from facelink.lake.fs import LakeFs, join, lake_fs
from facelink.lake.tables import replace_where
from schemas import get_spec

log = logging.getLogger(__name__)

DATASOURCE = "facelink"
DOCS_SITE = "facelink"
#: The lake folders GX writes: validation results and Data Docs.
RESULTS_SUB = "gx/validations"
DOCS_SUB = "dq_docs"
BATCH = "whole"
#: First pass: success only. Second pass, failed expectations only: counts and a few unexpected values
#: (BASIC, without SUMMARY's extra group-by per expectation).
QUICK_FORMAT: dict[str, Any] = {"result_format": "BOOLEAN_ONLY"}
DETAIL_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 5}
MAX_OBSERVED_ROWS = 5
#: Expectation arguments that are plumbing, not what the expectation checks.
_PLUMBING = {"batch_id", "result_format", "catch_exceptions", "include_config", "meta", "row_condition",
             "condition_parser", "severity", "description"}


@dataclass(frozen=True)
class Outcome:
    """One expectation's result: one row of ``dq_results``."""

    table: str
    suite: str
    expectation: str
    severity: str
    success: bool
    observed: str
    description: str = ""
    table_version: int | None = None
    evaluated_at: dt.datetime | None = None

    def line(self) -> str:
        """``table/suite: expectation [description]: observed``, for logs and error messages."""
        about = f" [{self.description}]" if self.description else ""
        return f"{self.table}/{self.suite}: {self.expectation}{about}: {self.observed}"


@dataclass(frozen=True)
class QualityReport:
    """Every outcome of one gate run, with the Data Docs index when one was built."""

    run_id: str
    scope_run_id: str | None
    outcomes: tuple[Outcome, ...]
    docs_index: str | None = None

    @property
    def critical_failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity == CRITICAL]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity != CRITICAL]

    @property
    def passed(self) -> bool:
        return not self.critical_failures

    def failure_message(self) -> str:
        """A readable account of the failed critical expectations (empty when there are none)."""
        failed = self.critical_failures
        if not failed:
            return ""
        scope = f" (scope {self.scope_run_id})" if self.scope_run_id else ""
        lines = "; ".join(o.line() for o in failed)
        return f"quality gate {self.run_id}{scope}: {len(failed)} critical expectation(s) failed: {lines}"

    def raise_for_critical(self) -> None:
        """Raise :class:`DataQualityError` when a critical expectation failed."""
        if self.critical_failures:
            raise DataQualityError(self.failure_message())


def local_dir(cfg: Config, sub: str) -> str | None:
    """``<lake.root>/<sub>`` as a local path, or None when the lake is not on the local filesystem."""
    root = cfg.lake_root
    if root.startswith("file:"):
        root = "/" + root[len("file:"):].lstrip("/")
    elif "://" in root:
        return None
    return str(Path(root) / sub)


@functools.lru_cache(maxsize=8)
def _mirror(lake_root: str, s3: LakeS3Conf) -> str:
    """The process's local mirror of a remote lake's GX folders, filled with its stored validation results."""
    folder = tempfile.mkdtemp(prefix="facelink-gx-")
    LakeFs(s3).download(join(lake_root, RESULTS_SUB), Path(folder) / RESULTS_SUB)
    return folder


def work_dir(cfg: Config, sub: str) -> str:
    """Where GX writes ``sub`` (``gx/validations`` or ``dq_docs``) in this process: the lake folder of a local
    lake, else the folder's place in the local mirror (uploaded by :func:`upload_outputs`)."""
    local = local_dir(cfg, sub)
    return local if local is not None else str(Path(_mirror(cfg.lake_root, cfg.lake.s3)) / sub)


def upload_outputs(cfg: Config, subs: Sequence[str]) -> None:
    """Put what GX wrote in the local mirror into a remote lake (nothing to do on a local lake)."""
    if local_dir(cfg, RESULTS_SUB) is not None:
        return
    lake = lake_fs(cfg)
    for sub in subs:
        folder = Path(work_dir(cfg, sub))
        if folder.is_dir():
            lake.upload(folder, join(cfg.lake_root, sub))


@functools.lru_cache(maxsize=8)
def gx_context(results_dir: str | None, docs_dir: str | None) -> AbstractDataContext:
    """The process's GX context for these folders (cached): in-memory suites, results and docs on disk."""
    defaults = InMemoryStoreBackendDefaults()
    stores = dict(defaults.stores)
    if results_dir:
        stores[defaults.validation_results_store_name] = {
            "class_name": "ValidationResultsStore",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": results_dir},
        }
    sites = {}
    if docs_dir:
        sites[DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir},
        }
    config = DataContextConfig(
        store_backend_defaults=defaults, stores=stores, data_docs_sites=sites, analytics_enabled=False,
    )
    context = gx.get_context(project_config=config, mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    # persist=False: the gate caches each frame itself and unpersists it after its suite ran.
    context.data_sources.add_spark(name=DATASOURCE, persist=False)
    return context


def context_for(cfg: Config) -> AbstractDataContext:
    docs = work_dir(cfg, DOCS_SUB) if cfg.dq.data_docs else None
    return gx_context(work_dir(cfg, RESULTS_SUB), docs)


def _definition(context: AbstractDataContext, name: str, expectations: Sequence[Expectation]
                ) -> gx.ValidationDefinition:
    """(Re)register suite ``name``: its thresholds follow the configuration of each call."""
    with contextlib.suppress(DataContextError):
        context.validation_definitions.delete(name)
    with contextlib.suppress(DataContextError):
        context.suites.delete(name)
    source = context.data_sources.get(DATASOURCE)
    try:
        asset = source.get_asset(name)
    except LookupError:
        asset = source.add_dataframe_asset(name=name)  # type: ignore[attr-defined]
    try:
        batch = asset.get_batch_definition(BATCH)
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe(BATCH)
    # fresh copies: GX binds an expectation object to the suite it is added to
    copies = [e.copy(deep=True, update={"id": None}) for e in expectations]
    gx_suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=copies))
    return context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=gx_suite))


def _validate(context: AbstractDataContext, name: str, expectations: Sequence[Expectation], frame: DataFrame,
              run_id: str, result_format: dict[str, Any]) -> ExpectationSuiteValidationResult:
    definition = _definition(context, name, expectations)
    return definition.run(
        batch_parameters={"dataframe": frame}, result_format=result_format,
        run_id=RunIdentifier(run_name=run_id, run_time=dt.datetime.now(dt.UTC)),
    )


def describe(kind: str, kwargs: Mapping[str, Any]) -> str:
    """``expect_x(column, key=value, ...)``: the expectation's name in ``dq_results`` and in messages."""
    args: list[str] = []
    for key in ("column", "column_A", "column_B"):
        if key in kwargs:
            args.append(str(kwargs[key]))
    if "column_list" in kwargs:
        args.extend(str(c) for c in kwargs["column_list"])
    for key, value in sorted(kwargs.items()):
        if key in _PLUMBING or key in ("column", "column_A", "column_B", "column_list") or value is None:
            continue
        shown = "{" + ", ".join(map(str, value)) + "}" if isinstance(value, list | tuple | set) else _num(value)
        args.append(f"{key}={shown}")
    return f"{kind}({', '.join(args)})"


def _num(value: Any) -> Any:
    """GX stores bounds as floats: show a whole number as one (``1``, not ``1.0``)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def observed_text(result: Mapping[str, Any], exception: Mapping[str, Any] | None) -> str:
    """What GX observed, in words: counts and a few unexpected values, or the aggregate's value."""
    if exception and exception.get("raised_exception"):
        return f"error: {exception.get('exception_message')}"
    if "observed_value" in result:
        return f"observed {result['observed_value']!r}"
    if result.get("element_count") == 0:
        return "no rows"
    if "unexpected_count" in result:
        total = result.get("element_count", 0) - (result.get("missing_count") or 0)
        unexpected = result.get("unexpected_count") or 0
        text = f"{unexpected} of {total} rows unexpected"
        sample = result.get("partial_unexpected_list") or []
        if unexpected and sample:
            text += f", e.g. {list(sample)[:5]!r}"
        return text
    return repr(dict(result))[:500]


def _materialise(spark: SparkSession, suite: Suite, frame: DataFrame) -> tuple[DataFrame, dict[str, str]]:
    """Cache ``frame`` for the suite's metrics; a derived frame (``observe``) is collected to the driver.

    Returns the frame to validate and, per ``observe`` column, its values in words: ``0.5`` or, with a
    ``key`` column, ``0.5 (ingest-...)`` per row (first rows only).
    """
    if not suite.observe:
        return frame.persist(StorageLevel.MEMORY_AND_DISK), {}
    rows = frame.collect()
    shown = rows[:MAX_OBSERVED_ROWS]
    values = {
        c: ", ".join(_num_text(r[c]) + (f" ({r[suite.key]})" if suite.key else "") for r in shown) or "no rows"
        for c in suite.observe
    }
    return spark.createDataFrame(rows, frame.schema), values


def _num_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_suite(
    context: AbstractDataContext, suite: Suite, frame: DataFrame, run_id: str,
    table_version: int | None = None,
) -> list[Outcome]:
    """Validate ``frame`` against ``suite``; one :class:`Outcome` per expectation.

    A first pass asks GX for success only (about half the Spark jobs of a detailed result); when something
    failed, a second pass over just the failed expectations (suite ``<name>.failed``) gathers counts and
    sample values for the message, ``dq_results`` and Data Docs.
    """
    frame, values = _materialise(frame.sparkSession, suite, frame)
    try:
        quick = _validate(context, suite.name, suite.expectations, frame, run_id, QUICK_FORMAT)
        failed = {_label(item) for item in quick.results if not item.success}
        details: dict[str, str] = {}
        if failed:
            again = [e for e in suite.expectations if describe(e.expectation_type, e.configuration.kwargs) in failed]
            detailed = _validate(context, f"{suite.name}.failed", again, frame, run_id, DETAIL_FORMAT)
            details = {_label(item): observed_text(item.result or {}, item.exception_info)
                       for item in detailed.results}
    finally:
        frame.unpersist()
    at = dt.datetime.now(dt.UTC)
    outcomes = []
    for item in quick.results:
        conf = item.expectation_config
        assert conf is not None
        label = _label(item)
        observed = details.get(label) or ("passed" if item.success else "failed")
        column = conf.kwargs.get("column")
        if column in values:
            observed += f"; {column} = {values[column]}"
        severity = getattr(conf.severity, "value", conf.severity)
        outcomes.append(Outcome(
            table=suite.table, suite=suite.name, expectation=label,
            severity=WARNING if severity == WARNING else CRITICAL, success=bool(item.success),
            observed=observed, description=conf.description or "", table_version=table_version,
            evaluated_at=at,
        ))
    return outcomes


def _label(item: ExpectationValidationResult) -> str:
    conf = item.expectation_config
    assert conf is not None
    return describe(conf.type, conf.kwargs)


def validate(
    spark: SparkSession, cfg: Config, tables: Sequence[str], run_id: str, scope_run_id: str | None = None,
    versions: Mapping[str, int] | None = None, frames: Mapping[str, DataFrame] | None = None,
) -> list[Outcome]:
    """Run the suites of ``tables``; Delta tables are read at ``versions``, or taken from ``frames``.

    Raises:
        ValueError: a table has no suites.
    """
    suites = suites_for(list(tables), cfg)
    inputs = SuiteInputs(spark, cfg, scope_run_id, dict(versions or {}), dict(frames or {}))
    context = context_for(cfg)
    outcomes: list[Outcome] = []
    for suite in suites:
        version = None if suite.table in inputs.frames else inputs.versions.get(suite.table)
        outcomes.extend(run_suite(context, suite, suite.frame(inputs), run_id, version))
        log.info("suite %s of %s: %d expectations", suite.name, suite.table, len(suite.expectations))
    upload_outputs(cfg, [RESULTS_SUB])
    return outcomes


def results_frame(spark: SparkSession, run_id: str, outcomes: Sequence[Outcome]) -> DataFrame:
    """``outcomes`` as ``dq_results`` rows."""
    spec = get_spec("dq_results")
    now = dt.datetime.now(dt.UTC)
    rows = [
        (run_id, o.table, o.table_version, o.suite, o.expectation, o.severity, o.success, o.observed,
         o.evaluated_at or now)
        for o in outcomes
    ]
    return spark.createDataFrame(rows, spec.schema)


def write_results(spark: SparkSession, cfg: Config, run_id: str, outcomes: Sequence[Outcome]) -> None:
    """Replace the ``dq_results`` rows of ``run_id`` by ``outcomes`` (a rerun of a gate run replaces it)."""
    keys = [(o.table, o.expectation) for o in outcomes]
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"dq_results: expectation names repeat within a table: {dupes}")
    rows = results_frame(spark, run_id, outcomes)
    replace_where(spark, cfg, get_spec("dq_results"), rows, "run_id", run_id)


def build_docs(cfg: Config, run_id: str) -> str | None:
    """Render the Data Docs pages of ``run_id``'s validations and the index; return the index path.

    Only this run's pages are rendered (older pages stay as they were); the index lists every stored
    validation. Returns None when Data Docs are off (``dq.data_docs``). On a remote lake the pages are built
    in the local mirror and uploaded; the returned index is then the lake URI.
    """
    if not cfg.dq.data_docs:
        return None
    docs_dir = work_dir(cfg, DOCS_SUB)
    context = context_for(cfg)
    keys = [
        k for k in context.validation_results_store.list_keys()
        if isinstance(k, ValidationResultIdentifier) and k.run_id.run_name == run_id
    ]
    context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=keys)
    if local_dir(cfg, DOCS_SUB) is None:
        upload_outputs(cfg, [DOCS_SUB])
        return join(cfg.lake_root, DOCS_SUB, "index.html")
    return str(Path(docs_dir) / "index.html")
