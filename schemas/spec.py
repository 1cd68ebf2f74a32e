"""The :class:`TableSpec` type and schema assertions."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import types as T

#: Types Delta keeps min/max statistics of (booleans, binaries and nested types get none).
STATS_TYPES = (T.StringType, T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType,
               T.DecimalType, T.DateType, T.TimestampType)


def col(name: str, dtype: T.DataType, nullable: bool = True, comment: str = "") -> T.StructField:
    """A column with its comment stored in the field metadata (Delta keeps it as the column comment)."""
    return T.StructField(name, dtype, nullable, {"comment": comment} if comment else {})


@dataclass(frozen=True)
class TableSpec:
    """One Delta table: name, columns, partitioning, key, properties and a comment.

    Attributes:
        name: table name; its location is ``<lake.root>/tables/<name>``.
        schema: columns with types and nullability.
        partition_by: Delta partition columns.
        key: columns that identify a row; jobs merge on them so reruns are idempotent.
        comment: what one row means.
        properties: Delta table properties.
        append_only: the table only ever grows (audit); enforced by Delta's ``appendOnly`` property.
        identifying: columns whose values name a person or a photo (ids, file paths, free text quoting them).
            Delta keeps no statistics of them (:meth:`table_properties`): a data file's min/max values live
            on in the transaction log's commits and checkpoints after the file itself is vacuumed.
    """

    name: str
    schema: T.StructType
    partition_by: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    comment: str = ""
    properties: dict[str, str] = field(default_factory=dict)
    append_only: bool = False
    identifying: tuple[str, ...] = ()

    def stats_columns(self) -> list[str]:
        """The columns Delta collects min/max statistics of: atomic, not partition keys, not identifying."""
        return [f.name for f in self.schema.fields
                if isinstance(f.dataType, STATS_TYPES) and f.name not in self.partition_by
                and f.name not in self.identifying]

    def table_properties(self) -> dict[str, str]:
        """:attr:`properties`, plus ``delta.dataSkippingStatsColumns`` when a column is identifying (no
        statistics at all, ``delta.dataSkippingNumIndexedCols=0``, when no other column qualifies)."""
        props = dict(self.properties)
        if self.identifying:
            unknown = sorted(set(self.identifying) - set(self.columns))
            if unknown:
                raise ValueError(f"{self.name}: identifying columns {unknown} are not columns")
            stats = self.stats_columns()
            if stats:
                props["delta.dataSkippingStatsColumns"] = ",".join(stats)
            else:
                props["delta.dataSkippingNumIndexedCols"] = "0"
        return props

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.schema.fields]

    def conform(self, df: DataFrame) -> DataFrame:
        """Select the spec's columns in order, cast to its types (the write's schema contract)."""
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise ValueError(f"{self.name}: output lacks columns {missing}")
        return df.select(*[df[f.name].cast(f.dataType).alias(f.name) for f in self.schema.fields])


def assert_schema(df: DataFrame, spec: TableSpec) -> None:
    """Raise ``ValueError`` unless ``df`` has exactly the spec's column names and types, in order.

    Nullability is checked by the data-quality gates, not here: Spark often widens it in plans.
    """
    got = [(f.name, f.dataType.simpleString()) for f in df.schema.fields]
    want = [(f.name, f.dataType.simpleString()) for f in spec.schema.fields]
    if got != want:
        diff = [f"{w} != {g}" for w, g in zip(want, got, strict=False) if w != g]
        raise ValueError(f"{spec.name}: schema mismatch: {diff or (want, got)}")
