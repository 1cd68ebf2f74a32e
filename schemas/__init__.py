"""Table specifications: one module per Delta table, each exposing ``SPEC``.

A :class:`TableSpec` is used to create the table, to type UDF outputs, and to assert every job's output
before it writes (:func:`schemas.spec.assert_schema`).
"""

from schemas.spec import TableSpec, assert_schema, col

__all__ = ["TableSpec", "all_specs", "assert_schema", "col", "get_spec"]

TABLES = (
    "photos",
    "rejects",
    "runs",
    "audit",
    "faces",
    "index_manifest",
    "matches",
    "probe_status",
    "duplicate_candidates",
    "duplicate_clusters",
    "dq_results",
    "reviews",
    "evaluations",
)


def get_spec(name: str) -> TableSpec:
    """The spec of table ``name`` (imported lazily from ``schemas/<name>.py``)."""
    import importlib

    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
    spec = importlib.import_module(f"schemas.{name}").SPEC
    assert isinstance(spec, TableSpec)
    return spec


def all_specs() -> list[TableSpec]:
    """Every table's spec, in pipeline order."""
    return [get_spec(name) for name in TABLES]
