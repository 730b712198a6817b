"""The export's SQL: resolving the columns, checking the source, the SELECT and the unload COPY.

``plan_export`` asks Snowflake for the source's columns (``LIMIT 0``) and counts (one scan), and
returns an ``ExportPlan`` whose SELECTs put the label first and every feature CAST to FLOAT, split
by ``MOD(ABS(HASH(<id>)), 100) < <percent>`` (validation) / ``>=`` (train). Only validated, quoted
names and integers ever reach the text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from snowsage.training.spec import ExportInputError, ExportSpec, quote

# Snowflake result types (snowflake.connector.constants.FIELD_TYPES) a feature may have.
NUMERIC_TYPES = frozenset({"FIXED", "REAL", "DECFLOAT"})

# cursor.execute with the time left (seconds); the exporters pass one bound to their TimeBudget.
Execute = Callable[[Any, str], Any]


def type_name(type_code: Any) -> str:
    from snowflake.connector.constants import FIELD_ID_TO_NAME

    return str(FIELD_ID_TO_NAME.get(type_code, type_code))


def split_condition(id_column: str, validation_percent: int, split: str) -> str:
    op = "<" if split == "validation" else ">="
    return f"MOD(ABS(HASH({quote(id_column)})), 100) {op} {int(validation_percent)}"


def export_select(
    *,
    source_sql: str,
    label: str,
    features: Sequence[str],
    id_column: str,
    validation_percent: int,
    split: str,
) -> str:
    """``SELECT CAST(label AS FLOAT), CAST(f AS FLOAT)... FROM source WHERE <split>``; names as resolved."""
    columns = ", ".join(f"CAST({quote(c)} AS FLOAT) AS {quote(c)}" for c in (label, *features))
    where = split_condition(id_column, validation_percent, split)
    return f"SELECT {columns} FROM {source_sql} WHERE {where}"  # noqa: S608 - validated, quoted names


def hash_bucket(columns: Sequence[str], buckets: int) -> str:
    """PARTITION BY expression: a bucket of the row's output columns (the id is not among them)."""
    hashed = ", ".join(quote(c) for c in columns)
    return f"'bucket=' || TO_VARCHAR(MOD(ABS(HASH({hashed})), {int(buckets)}))"


def unload_sql(*, stage_sql: str, path: str, select: str, columns: Sequence[str], buckets: int) -> str:
    """``COPY INTO @<stage>/<path> FROM (<select>) PARTITION BY (...) ...``, as Snowflake runs it.

    ``path`` is relative to the stage URL (``s3://<bucket>/training/runs/``): ``<id>/<split>/``.
    Never round-trip this through sqlglot: it re-renders PARTITION BY wrongly.
    """
    return (
        f"COPY INTO @{stage_sql}/{path} FROM ({select}) "
        f"PARTITION BY ({hash_bucket(columns, buckets)}) "
        "FILE_FORMAT=(TYPE=PARQUET) HEADER=TRUE DETAILED_OUTPUT=TRUE"
    )


@dataclass(frozen=True)
class ExportPlan:
    spec: ExportSpec
    label: str
    id_column: str
    features: tuple[str, ...]
    source_rows: int
    split_rows: dict[str, int]

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.label, *self.features)

    def select(self, split: str) -> str:
        return export_select(
            source_sql=self.spec.source_sql,
            label=self.label,
            features=self.features,
            id_column=self.id_column,
            validation_percent=self.spec.validation_percent,
            split=split,
        )

    def unload(self, split: str) -> str:
        return unload_sql(
            stage_sql=self.spec.stage_sql,
            path=f"{self.spec.execution_id}/{split}/",
            select=self.select(split),
            columns=self.columns,
            buckets=self.spec.files,
        )


def _source_name(spec: ExportSpec) -> str:
    return f"table {spec.table}" if spec.table is not None else "the source query"


def resolve_columns(spec: ExportSpec, description: Sequence[Any]) -> tuple[str, str, tuple[str, ...]]:
    """(label, id, features) as the source names them; every problem named in one message."""
    types = {d.name: type_name(d.type_code) for d in description}
    listed = ", ".join(f"{n} ({t})" for n, t in types.items())
    source = _source_name(spec)

    def find(name: str, what: str) -> str:
        if name in types:
            return name
        raise ExportInputError(
            f"{what} {name} is not a column of {source}; its columns are: {listed}. Fix the {what} setting"
        )

    label = find(spec.label, "label column")
    id_column = find(spec.id_column, "id column")
    if types[label] not in NUMERIC_TYPES:
        raise ExportInputError(
            f"label column {label} of {source} is {types[label]}, not numeric; XGBoost needs a numeric "
            "label (for classes, map them to 0/1 in a query source)"
        )
    if spec.features is None:
        features = tuple(n for n, t in types.items() if t in NUMERIC_TYPES and n not in (label, id_column))
        if not features:
            raise ExportInputError(
                f"{source} has no numeric column besides the label {label} and the id {id_column}; its "
                f"columns are: {listed}. Name the feature columns, or cast them in a query source"
            )
        return label, id_column, features
    missing = [f for f in spec.features if f not in types]
    if missing:
        raise ExportInputError(
            f"feature column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"{'are' if len(missing) > 1 else 'is'} not in {source}; its columns are: {listed}. "
            "Fix the features setting"
        )
    wrong = [f"{f} ({types[f]})" for f in spec.features if types[f] not in NUMERIC_TYPES]
    if wrong:
        raise ExportInputError(
            f"feature column{'s' if len(wrong) > 1 else ''} {', '.join(wrong)} of {source} "
            f"{'are' if len(wrong) > 1 else 'is'} not numeric; every feature must be a number (XGBoost "
            "reads all-numeric Parquet): drop it from the features, or cast/encode it in a query source"
        )
    return label, id_column, tuple(spec.features)


def plan_export(spec: ExportSpec, execute: Execute, connection: Any) -> ExportPlan:
    """Resolve the columns and check the source: rows present, label never NULL, both splits non-empty."""
    cur = connection.cursor()
    try:
        execute(cur, f"SELECT * FROM {spec.source_sql} LIMIT 0")  # noqa: S608 - validated, quoted
        label, id_column, features = resolve_columns(spec, cur.description or ())
        validation = split_condition(id_column, spec.validation_percent, "validation")
        execute(
            cur,
            f'SELECT COUNT(*) AS "ROWS", COUNT({quote(label)}) AS "LABELS", '  # noqa: S608 - quoted names
            f'COALESCE(SUM(CASE WHEN {validation} THEN 1 ELSE 0 END), 0) AS "VALIDATION" '
            f"FROM {spec.source_sql}",
        )
        rows, labels, validation_rows = (int(v or 0) for v in cur.fetchone())
    finally:
        cur.close()
    source = _source_name(spec)
    if rows == 0:
        raise ExportInputError(
            f"{source} returns no rows; load data into it, or fix the source setting (table or query)"
        )
    if labels < rows:
        raise ExportInputError(
            f"label column {label} of {source} is NULL in {rows - labels} of {rows} rows; XGBoost cannot "
            f"train on a missing label: use a query source with WHERE {label} IS NOT NULL, or fill it"
        )
    train_rows = rows - validation_rows
    for split, n in (("validation", validation_rows), ("train", train_rows)):
        if n == 0:
            raise ExportInputError(
                f"the {split} split of {source} is empty ({rows} rows, validation_percent="
                f"{spec.validation_percent}, split on id column {id_column}); change validation_percent, "
                "use an id column with distinct values, or a larger source"
            )
    return ExportPlan(
        spec=spec,
        label=label,
        id_column=id_column,
        features=features,
        source_rows=rows,
        split_rows={"train": train_rows, "validation": validation_rows},
    )
