"""Training export fixtures: the sandbox's housing table on fakesnow, a fresh moto bucket per test.

``housing`` loads HOUSING_ROWS deterministic rows (sandbox/sample_data.py) into a fresh database
once per session and keeps one connector connection open to it; ``bucket`` is a new results
bucket in moto for each test, so runs never meet unless a test makes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REGION, Housing, ServerProcess, housing_database

HOUSING_ROWS = 3000


@pytest.fixture(scope="session")
def housing(fakesnow_server: ServerProcess) -> Iterator[Housing]:
    with housing_database(fakesnow_server, "TR", "trainer", HOUSING_ROWS) as housing:
        yield housing


@pytest.fixture(scope="session")
def s3(aws_environment: dict[str, str]) -> Any:
    import boto3

    return boto3.client("s3", region_name=REGION)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"snowsage-tr-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def keys_under(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def read_parquet(s3: Any, bucket: str, key: str) -> Any:
    import io

    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


class FakeContext:
    """A Lambda context whose remaining time drops by ``step_ms`` at every call."""

    def __init__(self, remaining_ms: int, step_ms: int = 0) -> None:
        self.remaining = remaining_ms
        self.step = step_ms
        self.calls = 0

    def get_remaining_time_in_millis(self) -> int:
        self.calls += 1
        value = self.remaining
        self.remaining -= self.step
        return value
