"""What the helper accepts and refuses before anything reaches Snowflake or S3."""

from __future__ import annotations

import numpy as np
import pytest

import snowsage.notebook as nb


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("housing", '"HOUSING"'),
        ("Housing_2024$", '"HOUSING_2024$"'),
        ("_t", '"_T"'),
        ("analytics.public.housing", '"ANALYTICS"."PUBLIC"."HOUSING"'),
        ("public.housing", '"PUBLIC"."HOUSING"'),
        ('"a""b"', '"a""b"'),  # a quoted part is kept exactly, "" stays the escaped quote
        ('"My table"', '"My table"'),
        ('db."sales.2024"', '"DB"."sales.2024"'),  # a dot inside quotes belongs to the name
        ('"select"', '"select"'),
    ],
)
def test_table_names_are_quoted_as_snowflake_resolves_them(name: str, quoted: str) -> None:
    assert nb.quote_table(name) == quoted


@pytest.mark.parametrize(
    "name",
    [
        "t; drop table x",
        "t--",
        "t/*",
        "t -- comment",
        "housing sample (100)",
        '"x"; drop table y; --"',
        '"a"b"',  # a lone quote inside a quoted part
        '"unterminated',
        '""',
        '"line\nbreak"',
        "1housing",
        "a.b.c.d",
        "a..b",
        ".housing",
        "housing.",
        " housing",
        "",
        "t'x",
        None,
        42,
    ],
)
def test_table_names_that_could_inject_or_are_invalid_are_refused(name: object) -> None:
    with pytest.raises(nb.InvalidArgument, match="not a valid Snowflake table name"):
        nb.quote_table(name)  # type: ignore[arg-type]


def test_overlong_identifier_is_refused() -> None:
    with pytest.raises(nb.InvalidArgument, match="longer than 255"):
        nb.quote_table("t" * 256)
    assert nb.quote_table("t" * 255) == '"' + "T" * 255 + '"'


@pytest.mark.parametrize(
    ("args", "sql"),
    [
        (("housing", 10, 42), 'select * from "HOUSING" sample bernoulli (10) seed (42)'),
        (("db.s.housing", 0.5), 'select * from "DB"."S"."HOUSING" sample bernoulli (0.5)'),
        (('"a""b"', 100, 0), 'select * from "a""b" sample bernoulli (100) seed (0)'),
        (("t", 1e-05), 'select * from "T" sample bernoulli (0.00001)'),
        (("t", np.float64(12.5), np.int64(7)), 'select * from "T" sample bernoulli (12.5) seed (7)'),
        (("t", 10.0, nb.MAX_SEED), 'select * from "T" sample bernoulli (10) seed (2147483647)'),
    ],
)
def test_sample_sql_is_built_from_validated_parts(args: tuple, sql: str) -> None:
    assert nb.sample_sql(*args) == sql


@pytest.mark.parametrize("percent", [0, -1, 100.5, float("nan"), float("inf"), True, "10", None, [10]])
def test_percent_outside_0_to_100_or_not_a_number_is_refused(percent: object) -> None:
    with pytest.raises(nb.InvalidArgument, match=r"percent is .*above 0 and at most 100"):
        nb.sample_sql("housing", percent)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, nb.MAX_SEED + 1, 1.5, True, "42", "1) union select 1 --"])
def test_seed_must_be_a_whole_number_in_snowflakes_range(seed: object) -> None:
    with pytest.raises(nb.InvalidArgument, match=r"seed is .*whole number from 0 to 2147483647"):
        nb.sample_sql("housing", 10, seed)  # type: ignore[arg-type]


def test_bad_arguments_are_refused_before_connecting(tmp_path, monkeypatch) -> None:
    # No settings file anywhere: a connection attempt would raise SettingsNotFound instead.
    monkeypatch.setenv(nb.SETTINGS_FILE_ENV_VAR, str(tmp_path / "missing.json"))
    with pytest.raises(nb.InvalidArgument, match="pass one SQL statement"):
        nb.query("  ")
    with pytest.raises(nb.InvalidArgument):
        nb.sample("t; drop table x", 10)
    with pytest.raises(nb.InvalidArgument):
        nb.sample("housing", 0)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("sample", "results/sample.parquet"),
        ("sample.parquet", "results/sample.parquet"),
        ("housing/2024-01_v1.2", "results/housing/2024-01_v1.2.parquet"),
        ("_tmp/a", "results/_tmp/a.parquet"),
    ],
)
def test_result_names_map_under_the_results_prefix(name: str, key: str) -> None:
    assert nb.result_key(name) == key


@pytest.mark.parametrize(
    "name",
    [
        "../secrets",
        "a/../../b",
        "a..b",
        "/etc/passwd",
        "a//b",
        "a/",
        "",
        ".parquet",
        ".hidden",
        "a b",
        "a\\b",
        "x?y=1",
        "s3://other-bucket/x",
        "x" * 201,
        None,
    ],
)
def test_unsafe_result_names_are_refused(name: object) -> None:
    with pytest.raises(nb.InvalidArgument, match=r"result name .* is not usable"):
        nb.result_key(name)  # type: ignore[arg-type]


def test_to_s3_refuses_a_bad_name_or_a_non_frame_before_touching_s3(tmp_path, monkeypatch) -> None:
    import pandas as pd

    monkeypatch.setenv(nb.SETTINGS_FILE_ENV_VAR, str(tmp_path / "missing.json"))
    with pytest.raises(nb.InvalidArgument, match="result name"):
        nb.to_s3(pd.DataFrame({"a": [1]}), "../x")
    with pytest.raises(nb.InvalidArgument, match="writes a pandas DataFrame; got list"):
        nb.to_s3([1, 2], "x")  # type: ignore[arg-type]
