"""Helpers for the analysts' notebooks (``notebooks/*.ipynb``): open the lake read-only for Spark SQL.

:func:`open_lake` loads the configuration (``lake.root`` from the notebook's parameter, else
``FACELINK_LAKE_ROOT``, else ``conf/<env>.yaml``, all through :func:`facelink.config.load_config`), builds the
one SparkSession and registers a temporary view per table, defined by the table's path
(``SELECT * FROM delta.`<lake>/tables/<name>```). A table the lake does not have yet becomes an empty view
with the table's schema, so every query runs and shows nothing rather than failing; nothing is written.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink.config import Config, load_config
from facelink.rates import format_rate
from facelink.session import build_session
from schemas import TABLES, get_spec

log = logging.getLogger(__name__)

_RATE = r"(\d+(?:\.\d+)?(?:e-?\d+)?)"
#: ``evaluations`` metrics that are points of a DET curve: (protocol, metric pattern, y is 1 - value).
DET_METRICS = (
    ("verification", re.compile(rf"^tar_at_far_{_RATE}$"), True),
    ("identification", re.compile(rf"^fnir_at_fpir_{_RATE}$"), False),
    ("dedup", re.compile(rf"^dup_recall_at_fpir_{_RATE}$"), True),
)


@dataclass(frozen=True)
class Lake:
    """An opened lake: the session, the configuration and which tables exist (True) or are empty views."""

    spark: SparkSession
    cfg: Config
    present: dict[str, bool]

    def sql(self, query: str) -> pd.DataFrame:
        """Run Spark SQL over the table views and return the (small) result as pandas."""
        return self.spark.sql(query).toPandas()

    def latest_run(self, job: str) -> str | None:
        """The newest succeeded run id of ``job``, or None."""
        runs = self.spark.table("runs").filter((F.col("job") == job) & (F.col("status") == "succeeded"))
        row = runs.orderBy(F.desc("ended_at")).select("run_id").first()
        return str(row["run_id"]) if row else None

    def rate_floors(self, run_id: str | None) -> tuple[float | None, float | None]:
        """(FMR floor, FPIR floor) recorded in the audit detail of ``run_id`` (None where not recorded)."""
        if not run_id:
            return None, None
        row = self.spark.table("audit").filter(F.col("run_id") == run_id).orderBy(F.desc("ended_at")).first()
        detail = json.loads(row["detail"]) if row is not None and row["detail"] else {}
        return detail.get("fmr_floor"), detail.get("fpir_floor")

    def rates_as_shown(self, frame: pd.DataFrame, run_id: str | None) -> pd.DataFrame:
        """``frame`` with its ``est_fmr`` and ``est_fpir`` columns as :func:`facelink.rates.format_rate` shows
        them: only the precision the run's calibration measured."""
        fmr_floor, fpir_floor = self.rate_floors(run_id)
        out = frame.copy()
        for column, floor in (("est_fmr", fmr_floor), ("est_fpir", fpir_floor)):
            if column in out:
                out[column] = [format_rate(v, floor) for v in out[column]]
        return out

    def view_of_run(self, table: str, run_id: str | None, view: str) -> None:
        """Register ``view`` as the rows of ``table`` written by ``run_id`` (no rows when it is None)."""
        whole = self.spark.table(table)
        rows = whole.filter(F.col("run_id") == run_id) if run_id else whole.limit(0)
        rows.createOrReplaceTempView(view)


def open_lake(env: str = "local", lake_root: str | None = None, tables: Sequence[str] = TABLES) -> Lake:
    """Load the configuration, build the session and register one view per table (see the module doc)."""
    cfg = load_config(env, [f"lake.root={lake_root}"] if lake_root else [])
    spark = build_session(cfg)
    return Lake(spark, cfg, register_views(spark, cfg, tables))


def register_views(spark: SparkSession, cfg: Config, tables: Sequence[str] = TABLES) -> dict[str, bool]:
    """Create or replace a temporary view per table; return table -> whether the Delta table exists."""
    present = {}
    for name in tables:
        path = cfg.table_path(name)
        present[name] = DeltaTable.isDeltaTable(spark, path)
        if present[name]:
            quoted = path.replace("`", "``")
            spark.sql(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM delta.`{quoted}`")
        else:
            spark.createDataFrame([], get_spec(name).schema).createOrReplaceTempView(name)
    log.info("lake %s: tables %s; absent (empty views): %s", cfg.lake_root,
             sorted(k for k, v in present.items() if v), sorted(k for k, v in present.items() if not v))
    return present


def det_points(evaluations: pd.DataFrame) -> pd.DataFrame:
    """Operating points of ``evaluations`` rows as DET points: (protocol, config_name, x error rate, y miss rate).

    TAR at FAR x becomes (x, 1 - TAR); FNIR at FPIR x stays (x, FNIR); duplicate recall at FPIR x becomes
    (x, 1 - recall). Only ``group_name == 'all'`` rows with a value are used; rows are sorted by x.
    """
    out = []
    rows = evaluations[(evaluations["group_name"] == "all") & evaluations["value"].notna()]
    for proto, config, metric, value in zip(rows["protocol"], rows["config_name"], rows["metric"], rows["value"],
                                            strict=True):
        for protocol, pattern, complement in DET_METRICS:
            hit = pattern.match(str(metric))
            if proto == protocol and hit:
                x = float(hit.group(1))
                y = 1.0 - float(value) if complement else float(value)
                if x > 0 and math.isfinite(y):
                    out.append((protocol, config, x, y))
    return pd.DataFrame(out, columns=["protocol", "config_name", "x", "y"]).sort_values(
        ["protocol", "config_name", "x"], ignore_index=True)
