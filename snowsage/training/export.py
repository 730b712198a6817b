"""The export: plan, write both splits (client or unload), then the manifest, last.

``export(spec, connection=..., s3=..., budget=...)`` refuses a run prefix that already holds
anything, and on any failure deletes what it wrote under the prefix (so no manifest and no partial
data remain) and raises ``ExportError`` saying why; a pipeline retry of the same execution then
finds the prefix empty again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from snowsage.training.spec import (
    SPLITS,
    ExportError,
    ExportResult,
    ExportSpec,
    ExportTimeLimit,
    Manifest,
    PrefixInUse,
    SplitOutput,
    TimeBudget,
)
from snowsage.training.sql import ExportPlan, plan_export
from snowsage.training.writer import DEFAULT_PART_SIZE, SplitWriter, encryption_args

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 65_536  # rows per Arrow slice handed to the writers (bounds one row group)
# Snowflake cancelled the statement: its STATEMENT_TIMEOUT_IN_SECONDS (630) or the connector's
# client-side timeout (604).
TIMEOUT_ERRNOS = frozenset({604, 630})
TRUST_HINTS = ("error assuming aws_role", "sts:assumerole", "externalid")


def check_prefix_free(s3: Any, spec: ExportSpec) -> None:
    found = s3.list_objects_v2(Bucket=spec.bucket, Prefix=spec.run_prefix, MaxKeys=2).get("Contents", [])
    if not found:
        return
    keys = [o["Key"] for o in found]
    what = (
        "the manifest of a finished export"
        if spec.manifest_key in keys
        else f"objects of an earlier export (e.g. {keys[0]})"
    )
    raise PrefixInUse(
        f"{spec.uri(spec.run_prefix)} already holds {what}; every run exports to its own prefix and "
        "never into another's: start a new pipeline execution (or, for an abandoned run, delete the prefix)"
    )


def discard(s3: Any, spec: ExportSpec) -> int:
    """Delete every object under the run prefix (only this run writes there); returns how many."""
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=spec.bucket, Prefix=spec.run_prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=spec.bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
    return deleted


def read_manifest(s3: Any, *, bucket: str, execution_id: str) -> Manifest | None:
    """The finished export of one run, or None while there is none (running, failed, never ran)."""
    spec_key = f"training/runs/{execution_id}/manifest.json"
    try:
        body = s3.get_object(Bucket=bucket, Key=spec_key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return Manifest.from_json(body, source=f"s3://{bucket}/{spec_key}")


def _executor(budget: TimeBudget, exporter: str) -> Any:
    def execute(cur: Any, sql: str) -> Any:
        budget.check(exporter=exporter, done="the statements before this one")
        if budget.limited:  # the connector cancels the query when the function's time is up
            return cur.execute(sql, timeout=budget.statement_timeout_s())
        return cur.execute(sql)

    return execute


def _batches(tables: Iterable[Any], batch_rows: int) -> Iterable[pa.RecordBatch]:
    for item in tables:  # the connector yields a pyarrow Table per result chunk
        yield from (item.to_batches(max_chunksize=batch_rows) if isinstance(item, pa.Table) else [item])


def write_split(
    batches: Iterable[pa.RecordBatch],
    *,
    s3: Any,
    spec: ExportSpec,
    split: str,
    columns: tuple[str, ...],
    budget: TimeBudget,
    part_size: int = DEFAULT_PART_SIZE,
) -> SplitOutput:
    """Stream ``batches`` into ``spec.files`` Parquet files under the split's prefix, all FLOAT."""
    schema = pa.schema([(c, pa.float64()) for c in columns])
    writer = SplitWriter(
        s3,
        spec.bucket,
        spec.split_prefix(split),
        files=spec.files,
        schema=schema,
        kms_key_id=spec.kms_key_id,
        part_size=part_size,
    )
    rows = 0
    try:
        for batch in batches:
            budget.check(exporter="client", done=f"writing {rows} rows of the {split} split")
            writer.write(batch)
            rows += batch.num_rows
        files = writer.close()
    except BaseException:
        writer.abort()
        raise
    if not files:
        raise ExportError(f"the {split} split returned no rows (the source changed while it was exported?)")
    return SplitOutput(split, spec.split_prefix(split), files)


def _written(out: dict[str, SplitOutput]) -> str:
    done = [f"the {name} split ({s.rows} rows)" for name, s in out.items()]
    return "writing " + " and ".join(done) if done else "planning"


def _client(
    plan: ExportPlan, *, connection: Any, s3: Any, budget: TimeBudget, batch_rows: int, part_size: int
) -> dict[str, SplitOutput]:
    execute = _executor(budget, "client")
    out: dict[str, SplitOutput] = {}
    for split in SPLITS:
        budget.check(exporter="client", done=_written(out))
        cur = connection.cursor()
        try:
            execute(cur, plan.select(split))
            out[split] = write_split(
                _batches(cur.fetch_arrow_batches(), batch_rows),
                s3=s3,
                spec=plan.spec,
                split=split,
                columns=plan.columns,
                budget=budget,
                part_size=part_size,
            )
        finally:
            cur.close()
    return out


def _unload_files(cur: Any, path: str) -> tuple[tuple[str, int], ...]:
    names = [str(d.name).upper() for d in cur.description or ()]
    if "FILE_NAME" not in names or "ROW_COUNT" not in names:
        raise ExportError(
            f"COPY INTO returned columns {names}, not DETAILED_OUTPUT's FILE_NAME and ROW_COUNT; "
            "the unload SQL must end with DETAILED_OUTPUT=TRUE"
        )
    name_at, rows_at = names.index("FILE_NAME"), names.index("ROW_COUNT")
    files = []
    for row in cur.fetchall():
        name = str(row[name_at]).lstrip("/")
        name = name[len(path) :] if name.startswith(path) else name
        files.append((name, int(row[rows_at])))
    return tuple(sorted(files))


def _unload(plan: ExportPlan, *, connection: Any, budget: TimeBudget) -> dict[str, SplitOutput]:
    execute = _executor(budget, "unload")
    spec = plan.spec
    out: dict[str, SplitOutput] = {}
    for split in SPLITS:
        budget.check(exporter="unload", done=_written(out))
        cur = connection.cursor()
        try:
            execute(cur, plan.unload(split))
            files = _unload_files(cur, f"{spec.execution_id}/{split}/")
        finally:
            cur.close()
        if sum(rows for _, rows in files) == 0:
            raise ExportError(
                f"the unload of the {split} split wrote no rows (the source changed while it ran?)"
            )
        out[split] = SplitOutput(split, spec.split_prefix(split), files)
    return out


def _explain(exc: BaseException, spec: ExportSpec, budget: TimeBudget, done: str) -> ExportError:
    if isinstance(exc, ExportError):
        return exc
    if getattr(exc, "errno", None) in TIMEOUT_ERRNOS:
        return budget.exceeded(exporter=spec.exporter, done=done)
    detail = f"{type(exc).__name__}: {exc}"
    if spec.exporter == "unload" and any(h in str(exc).lower() for h in TRUST_HINTS):
        detail += (
            " -- Snowflake could not assume the unload role: its trust must name the STORAGE_AWS_IAM_USER_ARN "
            "and STORAGE_AWS_EXTERNAL_ID that DESC INTEGRATION shows now (`snowsage train setup-sql` turns "
            "the pasted output into the settings; redeploy after setting them). An integration re-created "
            "with CREATE OR REPLACE has a new external id"
        )
    return ExportError(
        f"the export to {spec.uri(spec.run_prefix)} failed after {done}; nothing was kept and no manifest "
        f"was written: {detail}"
    )


def export(
    spec: ExportSpec,
    *,
    connection: Any,
    s3: Any,
    budget: TimeBudget | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    part_size: int = DEFAULT_PART_SIZE,
) -> ExportResult:
    """Export ``spec`` with its exporter; the manifest is written last, only when both splits are."""
    budget = budget or TimeBudget.unlimited()
    check_prefix_free(s3, spec)
    stage = "planning"
    try:
        plan = plan_export(spec, _executor(budget, spec.exporter), connection)
        stage = "planning and part of the export"
        if spec.exporter == "client":
            splits = _client(
                plan, connection=connection, s3=s3, budget=budget, batch_rows=batch_rows, part_size=part_size
            )
        else:
            splits = _unload(plan, connection=connection, budget=budget)
        stage = "both splits"
        budget.check(exporter=spec.exporter, done="writing both splits, before the manifest")
        manifest = Manifest(
            execution_id=spec.execution_id,
            exporter=spec.exporter,
            columns=plan.columns,
            validation_percent=spec.validation_percent,
            source_query_hash=spec.source_query_hash,
            splits=splits,
            queries={split: plan.select(split) for split in SPLITS},
        )
        s3.put_object(
            Bucket=spec.bucket,
            Key=spec.manifest_key,
            Body=manifest.to_json().encode("utf-8"),
            ContentType="application/json",
            **encryption_args(spec.kms_key_id),
        )
    except Exception as exc:
        error = _explain(exc, spec, budget, stage)
        try:
            removed = discard(s3, spec)
        except Exception as cleanup:  # noqa: BLE001 - said in the message: the operator deletes the prefix
            raise ExportError(
                f"{error} -- and deleting what it wrote under {spec.uri(spec.run_prefix)} failed too "
                f"({type(cleanup).__name__}: {cleanup}); delete that prefix before retrying"
            ) from exc
        log.warning("export %s failed; removed %d objects: %s", spec.execution_id, removed, error)
        if error is exc:
            raise
        raise error from exc
    result = manifest.result(bucket=spec.bucket, manifest_uri=spec.uri(spec.manifest_key))
    log.info("export %s done: %s", spec.execution_id, result.to_dict())
    return result


__all__ = [
    "ExportTimeLimit",
    "check_prefix_free",
    "discard",
    "export",
    "read_manifest",
    "write_split",
]
