"""The client exporter against fakesnow's housing table and moto's S3: what a training run reads."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from snowsage.training import (
    ExportError,
    ExportInputError,
    ExportSpec,
    ExportTimeLimit,
    PrefixInUse,
    TimeBudget,
    export,
    read_manifest,
    write_split,
)
from tests.training.conftest import FakeContext, keys_under, read_parquet

DEFAULT_FEATURES = ["BEDROOMS", "BATHROOMS", "SQFT", "LOT_SQFT", "YEAR_BUILT", "DISTANCE_KM"]


def make_spec(bucket: str, source: dict[str, Any], **kw: Any) -> ExportSpec:
    args = {
        "execution_id": uuid.uuid4().hex[:12],
        "bucket": bucket,
        "label": "PRICE",
        "id_column": "HOUSE_ID",
    }
    return ExportSpec(**{**args, **source, **kw})


def split_tables(s3, bucket, spec, split) -> list[pa.Table]:
    keys = [k for k in keys_under(s3, bucket, spec.split_prefix(split))]
    return [read_parquet(s3, bucket, k) for k in keys]


class Recorder:
    """An S3 client that records which objects became visible, in order, and can fail one call."""

    def __init__(self, s3: Any, *, fail_on: str | None = None, fail_key_part: str = "") -> None:
        self._s3, self.fail_on, self.fail_key_part = s3, fail_on, fail_key_part
        self.completed: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._s3, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if name == self.fail_on and self.fail_key_part in kwargs.get("Key", ""):
                raise ConnectionError(f"injected failure in {name}")
            out = method(*args, **kwargs)
            if name in ("put_object", "complete_multipart_upload"):
                self.completed.append(kwargs["Key"])
            return out

        return call if callable(method) else method


@pytest.fixture(scope="module")
def default_run(housing, s3, kms_key_id) -> tuple[ExportSpec, Any, Recorder, str]:
    bucket = f"snowsage-tr-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    spec = make_spec(bucket, {"table": housing.table}, files=3, instance_count=3, kms_key_id=kms_key_id)
    recorder = Recorder(s3)
    result = export(spec, connection=housing.connection, s3=recorder)
    return spec, result, recorder, bucket


def test_each_split_is_n_balanced_float_files_with_the_label_first(default_run, s3):
    spec, result, _, bucket = default_run
    for split in ("train", "validation"):
        tables = split_tables(s3, bucket, spec, split)
        assert len(tables) == 3
        rows = [t.num_rows for t in tables]
        assert min(rows) > 0 and max(rows) - min(rows) <= 1
        for table in tables:
            assert table.column_names == ["PRICE", *DEFAULT_FEATURES]
            assert all(field.type == pa.float64() for field in table.schema)
    d = result.to_dict()
    assert (d["train_files"], d["validation_files"], d["label"]) == (3, 3, "PRICE")
    assert d["features"] == ",".join(DEFAULT_FEATURES)
    assert d["train_prefix"] == f"training/runs/{spec.execution_id}/train/"  # a key prefix in d["bucket"]
    assert d["bucket"] == bucket and d["manifest"] == f"s3://{bucket}/{spec.manifest_key}"
    assert d["train_rows"] + d["validation_rows"] == d["rows"] == 3000


def test_the_manifest_is_written_last_and_matches_the_files(default_run, s3, kms_key_id):
    spec, result, recorder, bucket = default_run
    assert recorder.completed[-1] == spec.manifest_key
    assert len(recorder.completed) == 7  # 3 + 3 files, then the manifest
    manifest = read_manifest(s3, bucket=bucket, execution_id=spec.execution_id)
    assert manifest is not None
    assert manifest.rows == 3000 and manifest.columns == ("PRICE", *DEFAULT_FEATURES)
    assert manifest.source_query_hash == spec.source_query_hash
    for split in ("train", "validation"):
        listed = [
            k[len(spec.split_prefix(split)) :] for k in keys_under(s3, bucket, spec.split_prefix(split))
        ]
        assert [key for key, _ in manifest.splits[split].files] == listed
        assert manifest.splits[split].rows == result.to_dict()[f"{split}_rows"]
    doc = json.loads(s3.get_object(Bucket=bucket, Key=spec.manifest_key)["Body"].read())
    assert doc["splits"]["train"]["rows"] == result.train.rows
    for key in keys_under(s3, bucket, spec.run_prefix):
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"].endswith(kms_key_id)


def test_splits_are_disjoint_cover_every_row_and_hold_out_about_the_percent(housing, s3, bucket):
    spec = make_spec(
        bucket, {"table": housing.table}, features=("HOUSE_ID", "SQFT"), validation_percent=20, files=4
    )
    export(spec, connection=housing.connection, s3=s3)
    ids = {
        split: [i for t in split_tables(s3, bucket, spec, split) for i in t.column("HOUSE_ID").to_pylist()]
        for split in ("train", "validation")
    }
    train, validation = set(ids["train"]), set(ids["validation"])
    assert len(ids["train"]) == len(train) and len(ids["validation"]) == len(validation)  # no row twice
    assert not train & validation
    assert train | validation == {float(i) for i in range(1, housing.rows + 1)}
    assert 0.16 <= len(validation) / housing.rows <= 0.24


def test_a_second_export_to_the_same_prefix_is_refused_and_leaves_it_alone(default_run, housing, s3):
    spec, _, _, bucket = default_run
    before = keys_under(s3, bucket, spec.run_prefix)
    with pytest.raises(
        PrefixInUse, match=f"s3://{bucket}/training/runs/{spec.execution_id}/ already holds the manifest"
    ):
        export(spec, connection=housing.connection, s3=s3)
    assert keys_under(s3, bucket, spec.run_prefix) == before


def test_leftover_objects_in_a_prefix_are_refused_too(housing, s3, bucket):
    spec = make_spec(bucket, {"table": housing.table})
    s3.put_object(Bucket=bucket, Key=spec.split_prefix("train") + "stray.parquet", Body=b"x")
    with pytest.raises(PrefixInUse, match="objects of an earlier export"):
        export(spec, connection=housing.connection, s3=s3)


@pytest.mark.parametrize("failing_key", ["validation/part-00001", "manifest.json"])
def test_a_failure_leaves_no_manifest_and_no_data_and_says_why(housing, s3, bucket, failing_key):
    spec = make_spec(bucket, {"table": housing.table}, files=2)
    recorder = Recorder(s3, fail_on="put_object", fail_key_part=failing_key)  # small files are one PUT each
    with pytest.raises(
        ExportError, match="nothing was kept and no manifest was written: ConnectionError: injected"
    ):
        export(spec, connection=housing.connection, s3=recorder)
    assert keys_under(s3, bucket, spec.run_prefix) == []
    # the pipeline's retry of the same execution finds the prefix empty and succeeds
    assert export(spec, connection=housing.connection, s3=s3).to_dict()["rows"] == housing.rows


def test_fewer_rows_than_files_gives_only_non_empty_files(housing, s3, bucket):
    query = " ".join(["select * from", housing.table, 'where "HOUSE_ID" <= 40 -- forty rows'])
    spec = make_spec(bucket, {"query": query}, files=16, instance_count=2)
    result = export(spec, connection=housing.connection, s3=s3)
    assert result.train.rows + result.validation.rows == 40
    assert len(result.train.files) == 16
    validation = split_tables(s3, bucket, spec, "validation")
    assert len(validation) == result.validation.rows < 16
    assert all(t.num_rows == 1 for t in validation)


@pytest.mark.parametrize(
    ("source", "kw", "message"),
    [
        ({}, {"features": ("SQFT", "CITY")}, r"feature column CITY \(TEXT\) of table .* is not numeric"),
        (
            {},
            {"features": ("SQFT", "ROOMS")},
            r"feature column ROOMS is not in table .*; its columns are: HOUSE_ID \(FIXED\), CITY",
        ),
        ({}, {"label": "CITY"}, "label column CITY of table .* is TEXT, not numeric"),
        ({}, {"label": "COST"}, "label column COST is not a column of table"),
        ({}, {"id_column": "ID"}, "id column ID is not a column of table"),
        (
            {
                "query": 'select "HOUSE_ID", "SQFT", case when "HOUSE_ID" % 10 = 0 then null else "PRICE" end as "PRICE" from {t}'
            },
            {},
            r"label column PRICE of the source query is NULL in 300 of 3000 rows.*WHERE PRICE IS NOT NULL",
        ),
        ({"query": "select * from {t} where 1 = 0"}, {}, "the source query returns no rows"),
        (
            {"query": 'select * from {t} where "HOUSE_ID" <= 3'},
            {"validation_percent": 1},
            "the validation split of the source query is empty",
        ),
        (
            {"query": 'select "HOUSE_ID", "PRICE", "CITY" from {t}'},
            {},
            "has no numeric column besides the label PRICE and the id HOUSE_ID",
        ),
    ],
)
def test_bad_sources_fail_before_writing_with_the_column_and_the_fix(
    housing, s3, bucket, source, kw, message
):
    src = {k: v.format(t=housing.table) for k, v in source.items()} or {"table": housing.table}
    spec = make_spec(bucket, src, **kw)
    with pytest.raises(ExportInputError, match=message):
        export(spec, connection=housing.connection, s3=s3)
    assert keys_under(s3, bucket, spec.run_prefix) == []


def test_the_export_stops_before_the_function_runs_out_and_keeps_nothing(housing, s3, bucket):
    spec = make_spec(bucket, {"table": housing.table}, files=2)
    context = FakeContext(remaining_ms=120_000, step_ms=5_000)  # each look at the clock costs 5 s
    budget = TimeBudget.from_lambda_context(context, reserve_ms=60_000)
    with pytest.raises(ExportTimeLimit) as err:
        export(spec, connection=housing.connection, s3=s3, budget=budget, batch_rows=100)
    message = str(err.value)
    assert "outlast the export function's time limit (120 s remained" in message
    assert "rows of the train split" in message and "exporter=unload" in message
    assert keys_under(s3, bucket, spec.run_prefix) == []
    assert read_manifest(s3, bucket=bucket, execution_id=spec.execution_id) is None


class TimedCursor:
    def __init__(self, cur: Any, timeouts: list[int], fail_select: bool) -> None:
        self._cur, self._timeouts, self._fail = cur, timeouts, fail_select

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)

    def execute(self, sql: str, timeout: int | None = None) -> Any:
        self._timeouts.append(timeout)
        if self._fail and "CAST(" in sql:
            from snowflake.connector.errors import ProgrammingError

            raise ProgrammingError(
                msg="Statement reached its statement or warehouse timeout of 40 second(s) and was canceled.",
                errno=630,
            )
        return self._cur.execute(sql, timeout=timeout)


@pytest.mark.parametrize("fail_select", [False, True])
def test_every_query_is_bounded_by_the_time_left_and_a_snowflake_timeout_is_the_time_limit(
    housing, s3, bucket, fail_select
):
    timeouts: list[int] = []

    class Connection:
        def cursor(self) -> Any:
            return TimedCursor(housing.connection.cursor(), timeouts, fail_select)

    spec = make_spec(bucket, {"table": housing.table})
    budget = TimeBudget.from_lambda_context(
        FakeContext(remaining_ms=100_000, step_ms=1_000), reserve_ms=30_000
    )
    assert budget.session_parameters()["STATEMENT_TIMEOUT_IN_SECONDS"] <= 70
    if fail_select:
        with pytest.raises(ExportTimeLimit, match="time limit"):
            export(spec, connection=Connection(), s3=s3, budget=budget)
        assert keys_under(s3, bucket, spec.run_prefix) == []
    else:
        export(spec, connection=Connection(), s3=s3, budget=budget)
    assert timeouts and all(t is not None and 1 <= t <= 70 for t in timeouts)
    assert timeouts == sorted(timeouts, reverse=True)  # the bound shrinks as time passes


def synthetic_batches(count: int, rows: int, columns: int, seen: list[int]):
    import numpy as np

    rng = np.random.default_rng(1)
    names = [f"C{i}" for i in range(columns)]
    for _ in range(count):
        seen.append(pa.total_allocated_bytes())
        # computed into Arrow's pool (pa.array(numpy) would borrow numpy's memory, invisible to the count)
        yield pa.record_batch([pc.multiply(pa.array(rng.random(rows)), 1.0) for _ in names], names=names)


def test_memory_stays_about_one_batch_whatever_the_table_size(s3, bucket):
    spec = make_spec(bucket, {"table": "T"}, files=4)
    batch_bytes = 2000 * 8 * 8
    seen: list[int] = []
    baseline = pa.total_allocated_bytes()
    out = write_split(
        synthetic_batches(40, 2000, 8, seen),
        s3=s3,
        spec=spec,
        split="train",
        columns=tuple(f"C{i}" for i in range(8)),
        budget=TimeBudget.unlimited(),
    )
    assert out.rows == 80_000 and len(out.files) == 4
    # 40 batches went through; Arrow never held more than a few of them at once
    assert max(seen) - baseline < 4 * batch_bytes
    tables = [read_parquet(s3, bucket, spec.split_prefix("train") + key) for key, _ in out.files]
    assert sum(t.num_rows for t in tables) == 80_000


def test_large_files_stream_as_multipart_uploads_holding_one_part(s3, bucket, kms_key_id):
    from snowsage.training.writer import S3Upload

    part = 5 * 1024 * 1024
    upload = S3Upload(s3, bucket, "training/runs/big/x.bin", kms_key_id=kms_key_id, part_size=part)
    blob = bytes(range(256)) * (12 * 1024 * 1024 // 256)
    for i in range(0, len(blob), 1024 * 1024):
        upload.write(blob[i : i + 1024 * 1024])
    upload.finish()
    assert upload.peak_buffered < part + 1024 * 1024
    got = s3.get_object(Bucket=bucket, Key="training/runs/big/x.bin")
    assert got["Body"].read() == blob and got["ServerSideEncryption"] == "aws:kms"


def test_continuous_features_cost_no_more_than_their_raw_floats_in_s3(s3, bucket):
    # Random floats have no repeats: a dictionary page per column chunk only adds bytes (about 23 %
    # more than the raw data with pyarrow's default), which every host then downloads.
    spec = make_spec(bucket, {"table": "T"}, files=2)
    out = write_split(
        synthetic_batches(8, 25_000, 10, []),
        s3=s3,
        spec=spec,
        split="train",
        columns=tuple(f"C{i}" for i in range(10)),
        budget=TimeBudget.unlimited(),
    )
    prefix = spec.split_prefix("train")
    stored = sum(s3.head_object(Bucket=bucket, Key=prefix + key)["ContentLength"] for key, _ in out.files)
    raw = out.rows * 10 * 8
    assert out.rows == 200_000
    assert stored <= raw * 1.03, f"{stored / out.rows:.1f} bytes a row for {10 * 8} bytes of floats"
