"""The unload exporter: its inner SELECT on fakesnow, its COPY through a fake cursor (fakesnow cannot
run COPY INTO <location>), its DETAILED_OUTPUT counts, the manifest and the clean-up on failure."""

from __future__ import annotations

import re
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from snowflake.connector.errors import ProgrammingError

from snowsage.training import ExportError, ExportSpec, export, read_manifest
from snowsage.training.sql import plan_export
from tests.training.conftest import keys_under

STAGE = "analytics.public.training_stage"
COPY = re.compile(
    r"^COPY INTO @\"ANALYTICS\".\"PUBLIC\".\"TRAINING_STAGE\"/([^/]+)/(train|validation)/ FROM \((.*)\) PARTITION BY "
)


def make_spec(bucket: str, table: str, **kw: Any) -> ExportSpec:
    args = {
        "execution_id": uuid.uuid4().hex[:12],
        "bucket": bucket,
        "label": "PRICE",
        "id_column": "HOUSE_ID",
    }
    return ExportSpec(**{**args, "table": table, "exporter": "unload", "stage": STAGE, "files": 2, **kw})


class UnloadingConnection:
    """fakesnow for every statement but COPY INTO, which it plays the way Snowflake would: runs the
    inner SELECT on fakesnow, puts one object per bucket under the stage path, and answers with
    DETAILED_OUTPUT rows (FILE_NAME, FILE_SIZE, ROW_COUNT)."""

    def __init__(
        self, real: Any, s3: Any, bucket: str, *, fail_split: str | None = None, error: str = ""
    ) -> None:
        self.real, self.s3, self.bucket = real, s3, bucket
        self.fail_split, self.error = fail_split, error
        self.copies: list[str] = []
        self.selects: list[str] = []

    def cursor(self) -> Any:
        return _Cursor(self)


class _Cursor:
    def __init__(self, conn: UnloadingConnection) -> None:
        self.conn = conn
        self.cur = conn.real.cursor()
        self.description: Any = None
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, timeout: int | None = None) -> Any:
        match = COPY.match(sql)
        if match is None:
            self.cur.execute(sql)
            self.description = self.cur.description
            return self
        self.conn.copies.append(sql)
        run, split, select = match.groups()
        if split == self.conn.fail_split:
            raise ProgrammingError(msg=self.conn.error, errno=3001)
        self.conn.selects.append(select)
        rows = len(self.cur.execute(select).fetchall())  # the inner SELECT runs on fakesnow
        counts = [rows // 2, rows - rows // 2]
        self._rows = []
        for n, count in enumerate(counts):
            name = f"bucket={n}/data_01b2_0_0_0.snappy.parquet"
            self.conn.s3.put_object(
                Bucket=self.conn.bucket, Key=f"training/runs/{run}/{split}/{name}", Body=b"PAR1"
            )
            self._rows.append((name, 1024 + n, count))
        self.description = [SimpleNamespace(name=n) for n in ("FILE_NAME", "FILE_SIZE", "ROW_COUNT")]
        return self

    def fetchone(self) -> Any:
        return self.cur.fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def close(self) -> None:
        self.cur.close()


def test_the_inner_select_runs_on_snowflake_and_gives_the_label_first_all_float(housing):
    spec = make_spec("snowsage-dev-results", housing.table)
    plan = plan_export(spec, lambda cur, sql: cur.execute(sql), housing.connection)
    for split in ("train", "validation"):
        copy = plan.unload(split)
        assert copy.startswith(
            f'COPY INTO @"ANALYTICS"."PUBLIC"."TRAINING_STAGE"/{spec.execution_id}/{split}/ FROM ('
        )
        assert f"FROM ({plan.select(split)}) PARTITION BY (" in copy
        cur = housing.connection.cursor()
        cur.execute(plan.select(split))
        assert cur.description[0].name == "PRICE"
        assert {d.type_code for d in cur.description} == {1}  # REAL: FLOAT, not a Parquet DECIMAL
    assert plan.split_rows["train"] + plan.split_rows["validation"] == housing.rows


def test_an_unload_reports_detailed_output_counts_and_writes_the_manifest_last(
    housing, s3, bucket, kms_key_id
):
    conn = UnloadingConnection(housing.connection, s3, bucket)
    spec = make_spec(bucket, housing.table, kms_key_id=kms_key_id)
    result = export(spec, connection=conn, s3=s3).to_dict()
    assert [COPY.match(c).group(2) for c in conn.copies] == ["train", "validation"]
    assert result["train_rows"] + result["validation_rows"] == housing.rows
    assert (result["train_files"], result["validation_files"], result["exporter"]) == (2, 2, "unload")
    manifest = read_manifest(s3, bucket=bucket, execution_id=spec.execution_id)
    assert manifest is not None and manifest.exporter == "unload"
    assert [k for k, _ in manifest.splits["train"].files] == [
        "bucket=0/data_01b2_0_0_0.snappy.parquet",
        "bucket=1/data_01b2_0_0_0.snappy.parquet",
    ]
    assert s3.head_object(Bucket=bucket, Key=spec.manifest_key)["ServerSideEncryption"] == "aws:kms"


def test_a_failed_unload_deletes_the_other_split_and_explains_a_broken_trust(housing, s3, bucket):
    error = "Error assuming AWS_ROLE. Please verify the role and externalId are configured correctly in your AWS policy."
    conn = UnloadingConnection(housing.connection, s3, bucket, fail_split="validation", error=error)
    spec = make_spec(bucket, housing.table)
    with pytest.raises(ExportError) as err:
        export(spec, connection=conn, s3=s3)
    message = str(err.value)
    assert "nothing was kept and no manifest was written" in message and "Error assuming AWS_ROLE" in message
    assert "STORAGE_AWS_EXTERNAL_ID" in message and "CREATE OR REPLACE" in message
    assert len(conn.copies) == 2  # train was unloaded, then removed
    assert keys_under(s3, bucket, spec.run_prefix) == []


def test_copy_output_without_detailed_columns_is_an_error_naming_them(housing, s3, bucket):
    class Plain(UnloadingConnection):
        def cursor(self) -> Any:
            cur = _Cursor(self)
            execute = cur.execute

            def run(sql: str, timeout: int | None = None) -> Any:
                out = execute(sql, timeout)
                if COPY.match(sql):
                    cur.description = [SimpleNamespace(name=n) for n in ("rows_unloaded", "input_bytes")]
                return out

            cur.execute = run  # type: ignore[method-assign]
            return cur

    spec = make_spec(bucket, housing.table)
    with pytest.raises(ExportError, match="not DETAILED_OUTPUT's FILE_NAME and ROW_COUNT"):
        export(spec, connection=Plain(housing.connection, s3, bucket), s3=s3)
    assert keys_under(s3, bucket, spec.run_prefix) == []
