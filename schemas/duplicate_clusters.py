"""``duplicate_clusters``: connected components of duplicate candidates, one row per member record."""

from pyspark.sql import types as T

from schemas.spec import TableSpec, col

SPEC = TableSpec(
    name="duplicate_clusters",
    identifying=('cluster_id', 'record_id', 'strongest_link_record_id'),
    comment="Records linked by candidate pairs (connected components); each member with its strongest link.",
    key=("run_id", "cluster_id", "record_id"),
    schema=T.StructType([
        col("run_id", T.StringType(), False),
        col("cluster_id", T.StringType(), False, "the smallest record_id in the cluster"),
        col("cluster_size", T.IntegerType(), False),
        col("record_id", T.StringType(), False),
        col("strongest_link_record_id", T.StringType(), False),
        col("strongest_link_score", T.FloatType(), False),
        col("strongest_link_band", T.StringType(), False),
    ]),
)
