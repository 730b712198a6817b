"""The helpers against the sandbox: parameters in moto, the real connector, fakesnow, S3 in moto."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

import snowsage.notebook as nb
from sandbox.sample_data import COLUMNS, housing_frame
from tests.notebook.conftest import HOUSING_ROWS, Deploy, Deployment, HousingTable


@pytest.fixture
def connected(deploy: Deploy, housing_table: HousingTable) -> Deployment:
    dep = deploy(database=housing_table.database)
    nb.connect(dep.settings_file)
    return dep


def test_query_returns_the_table_as_a_dataframe(connected: Deployment, housing_table: HousingTable) -> None:
    df = nb.query("select * from identifier(%s) order by house_id", (housing_table.table,))
    pd.testing.assert_frame_equal(df, housing_frame(HOUSING_ROWS))


def test_query_binds_values_instead_of_splicing_them(connected: Deployment) -> None:
    df = nb.query("select count(*) as n from housing where city = %(city)s", {"city": "x' or '1'='1"})
    assert df["N"].tolist() == [0]


def test_empty_result_keeps_the_columns(connected: Deployment) -> None:
    df = nb.query("select * from housing where price < 0")
    assert df.empty
    assert list(df.columns) == list(COLUMNS)


def test_query_batches_yield_every_row_and_an_empty_frame_for_no_rows(connected: Deployment) -> None:
    frames = list(nb.query_batches("select house_id, price from housing"))
    assert sum(len(f) for f in frames) == HOUSING_ROWS
    assert all(list(f.columns) == ["HOUSE_ID", "PRICE"] for f in frames)
    empty = list(nb.query_batches("select house_id, price from housing where 1 = 0"))
    assert len(empty) == 1 and empty[0].empty and list(empty[0].columns) == ["HOUSE_ID", "PRICE"]


def test_sample_with_a_seed_is_a_repeatable_share_of_the_table(
    connected: Deployment, housing_table: HousingTable
) -> None:
    first = nb.sample(housing_table.table, 10, seed=42)
    again = nb.sample(housing_table.table, 10, seed=42)
    assert list(first.columns) == list(COLUMNS)
    assert 0.05 * HOUSING_ROWS < len(first) < 0.15 * HOUSING_ROWS
    pd.testing.assert_frame_equal(first, again)
    assert len(nb.sample("housing", 100)) == HOUSING_ROWS  # unqualified: the configured db/schema


def test_parquet_round_trip_through_the_results_bucket(connected: Deployment, s3: Any) -> None:
    df = nb.query("select * from housing where bedrooms = 2 order by house_id")
    uri = nb.to_s3(df, "tests/two_bedrooms")
    assert uri == f"s3://{connected.bucket}/results/tests/two_bedrooms.parquet"
    body = s3.get_object(Bucket=connected.bucket, Key="results/tests/two_bedrooms.parquet")["Body"].read()
    assert body[:4] == b"PAR1"
    assert pq.read_table(io.BytesIO(body)).num_rows == len(df)
    pd.testing.assert_frame_equal(nb.read_s3("tests/two_bedrooms"), df)


def test_s3_helpers_need_no_snowflake_session(deploy: Deploy, monkeypatch: pytest.MonkeyPatch) -> None:
    dep = deploy()
    monkeypatch.setenv(nb.SETTINGS_FILE_ENV_VAR, str(dep.settings_file))
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    nb.to_s3(frame, "plain")
    assert nb._state["conn"] is None
    pd.testing.assert_frame_equal(nb.read_s3("plain.parquet"), frame)


def test_a_frame_parquet_cannot_hold_is_refused_with_the_fix(connected: Deployment) -> None:
    with pytest.raises(nb.InvalidArgument, match=r"cannot be stored as Parquet .*astype\(str\)"):
        nb.to_s3(pd.DataFrame({"mixed": [1, "one"]}), "mixed")


def test_closed_connection_is_reopened(connected: Deployment) -> None:
    conn = nb.connect()
    conn.close()
    conn._rest = None  # fakesnow keeps the session on close(); Snowflake's connector then reports closed
    assert nb.query("select 1 as one")["ONE"].tolist() == [1]
    assert nb.connect() is not conn


def test_an_expired_session_is_reopened_once(connected: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    from snowflake.connector.errors import ProgrammingError

    conn = nb.connect()

    def expired_cursor(*args: Any, **kwargs: Any) -> Any:
        raise ProgrammingError(msg="Authentication token has expired.", errno=390114)

    monkeypatch.setattr(conn, "cursor", expired_cursor)
    assert nb.query("select 2 as two")["TWO"].tolist() == [2]
    assert nb.connect() is not conn


@pytest.fixture
def s3(aws_environment: dict[str, str]) -> Any:
    import boto3

    return boto3.client("s3", region_name="us-east-1")
