"""The export's inputs and SQL text, without a server: every bad value is one error naming it."""

from __future__ import annotations

import json

import pytest

from snowsage.training import ExportInputError, ExportSpec, ExportTimeLimit, TimeBudget
from snowsage.training.integration import parse_desc_integration, source_grants_sql, unload_setup_sql
from snowsage.training.spec import export_config
from snowsage.training.sql import ExportPlan, export_select, unload_sql
from tests.training.conftest import FakeContext

BASE = {
    "execution_id": "abc123xyz",
    "bucket": "snowsage-dev-results",
    "label": "price",
    "id_column": "house_id",
}


def spec(**kw):
    return ExportSpec(**{**BASE, "table": "analytics.public.housing", **kw})


def test_a_spec_names_its_fresh_run_prefixes_and_quotes_the_source():
    s = spec(execution_id="arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/q1w2e3")
    assert s.execution_id == "q1w2e3"
    assert s.split_prefix("train") == "training/runs/q1w2e3/train/"
    assert s.manifest_key == "training/runs/q1w2e3/manifest.json"
    assert s.source_sql == '"ANALYTICS"."PUBLIC"."HOUSING"'
    assert (s.label, s.id_column) == ("PRICE", "HOUSE_ID")
    assert s.source_query_hash == spec().source_query_hash != spec(table="other").source_query_hash


@pytest.mark.parametrize(
    ("kw", "named"),
    [
        ({"label": "price; drop table x"}, "label column is 'price; drop table x'"),
        ({"id_column": "1id"}, "id column is '1id'"),
        ({"features": ("SQFT", 'x"y')}, "feature column is 'x\"y'"),
        ({"features": ("SQFT", "sqft")}, "features name SQFT more than once"),
        ({"features": ("SQFT", "PRICE")}, "features include the label column PRICE"),
        ({"features": ()}, "features is empty"),
        ({"table": "a.b.c.d"}, "source table is 'a.b.c.d'"),
        ({"table": "t", "query": "select 1"}, "set exactly one of them"),
        ({"table": None}, "set exactly one of them"),
        ({"table": None, "query": "delete from t"}, "source query is 'delete from t'"),
        ({"validation_percent": 0}, "validation_percent is 0"),
        ({"validation_percent": 100}, "validation_percent is 100"),
        ({"validation_percent": "ten"}, "validation_percent is 'ten'"),
        ({"files": 2, "instance_count": 3}, "files is 2 but instance_count is 3"),
        ({"files": 0}, "files is 0"),
        ({"exporter": "spark"}, "exporter is 'spark'"),
        ({"exporter": "unload"}, "no stage is set"),
        ({"exporter": "unload", "stage": "db.s.st@ge"}, "stage is 'db.s.st@ge'"),
        ({"execution_id": "../other"}, "execution_id is '../other'"),
        ({"bucket": "s3://b/x"}, "bucket is 's3://b/x'"),
    ],
)
def test_bad_input_is_one_error_naming_the_value(kw, named):
    with pytest.raises(ExportInputError) as err:
        spec(**kw)
    assert named in str(err.value)


def test_pipeline_arguments_parse_into_a_spec():
    event = {
        **BASE,
        "table": "HOUSING",
        "features": "SQFT, bedrooms",
        "validation_percent": "25",
        "files": "4",
        "instance_count": 2,
        "kms_key_id": "",
        "bucket": "",
    }
    s = ExportSpec.from_event(event, default_bucket="snowsage-dev-results")
    assert (s.features, s.validation_percent, s.files, s.instance_count) == (("SQFT", "BEDROOMS"), 25, 4, 2)
    assert (s.bucket, s.kms_key_id) == ("snowsage-dev-results", None)
    assert ExportSpec.from_event({**BASE, "table": "T", "features": ""}).features is None
    # the pipeline definition's names, over the function's static config
    static = json.loads(export_config(table="HOUSING", label="price", id_column="house_id", files=2))
    s = ExportSpec.from_event(
        {
            "run_id": "r1",
            "bucket": "snowsage-dev-results",
            "run_prefix": "training/runs/r1/",
            "min_train_files": "3",
        },
        defaults=static,
    )
    assert (s.execution_id, s.label, s.instance_count, s.files) == ("r1", "PRICE", 3, 3)
    with pytest.raises(ExportInputError, match="run_prefix is 'training/runs/other/' but execution r1"):
        ExportSpec.from_event(
            {"run_id": "r1", "bucket": "b-b", "run_prefix": "training/runs/other/"}, defaults=static
        )
    with pytest.raises(ExportInputError, match="feature column is 'a b'"):
        export_config(table="T", label="P", id_column="I", features=["a b"])
    with pytest.raises(ExportInputError, match=r"unknown argument.*password"):
        ExportSpec.from_event({**BASE, "table": "T", "password": "x"})
    with pytest.raises(ExportInputError, match="the export has no execution_id"):
        ExportSpec.from_event({k: v for k, v in BASE.items() if k != "execution_id"} | {"table": "T"})


def test_the_select_puts_the_label_first_casts_to_float_and_splits_by_the_id_hash():
    text = export_select(
        source_sql='"DB"."PUBLIC"."HOUSING"',
        label="PRICE",
        features=("SQFT", "BEDROOMS"),
        id_column="HOUSE_ID",
        validation_percent=20,
        split="validation",
    )
    assert text == (
        'SELECT CAST("PRICE" AS FLOAT) AS "PRICE", CAST("SQFT" AS FLOAT) AS "SQFT", '
        'CAST("BEDROOMS" AS FLOAT) AS "BEDROOMS" FROM "DB"."PUBLIC"."HOUSING" '
        'WHERE MOD(ABS(HASH("HOUSE_ID")), 100) < 20'
    )
    train = export_select(
        source_sql="x", label="P", features=("F",), id_column="I", validation_percent=7, split="train"
    )
    assert train.endswith('WHERE MOD(ABS(HASH("I")), 100) >= 7')


def test_a_query_source_is_a_derived_table():
    s = spec(table=None, query="select * from housing where city = 'Oakmont' -- the priciest;  ")
    assert (
        s.source_sql
        == "(select * from housing where city = 'Oakmont' -- the priciest\n) AS \"SNOWSAGE_SOURCE\""
    )


def test_the_unload_copy_is_exact():
    s = spec(exporter="unload", stage="analytics.public.training_stage", files=4, instance_count=4)
    plan = ExportPlan(
        spec=s,
        label="PRICE",
        id_column="HOUSE_ID",
        features=("SQFT",),
        source_rows=10,
        split_rows={"train": 8, "validation": 2},
    )
    assert plan.unload("train") == (
        'COPY INTO @"ANALYTICS"."PUBLIC"."TRAINING_STAGE"/abc123xyz/train/ FROM ('
        'SELECT CAST("PRICE" AS FLOAT) AS "PRICE", CAST("SQFT" AS FLOAT) AS "SQFT" '
        'FROM "ANALYTICS"."PUBLIC"."HOUSING" WHERE MOD(ABS(HASH("HOUSE_ID")), 100) >= 20) '
        'PARTITION BY (\'bucket=\' || TO_VARCHAR(MOD(ABS(HASH("PRICE", "SQFT")), 4))) '
        "FILE_FORMAT=(TYPE=PARQUET) HEADER=TRUE DETAILED_OUTPUT=TRUE"
    )
    assert plan.unload("validation").startswith(
        'COPY INTO @"ANALYTICS"."PUBLIC"."TRAINING_STAGE"/abc123xyz/validation/ FROM ('
        + plan.select("validation")
        + ")"
    )
    assert (
        unload_sql(stage_sql="S", path="p/", select="SELECT 1", columns=("A",), buckets=2).count(
            "PARTITION BY"
        )
        == 1
    )


ROLE_ARN = "arn:aws:iam::123456789012:role/snowsage-dev-unload"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0f3c2a1b-1111-2222-3333-444455556666"


def test_unload_setup_sql_never_replaces_the_integration_and_encrypts_the_stage():
    sql = unload_setup_sql(
        integration="snowsage_dev_training",
        role_arn=ROLE_ARN,
        bucket="snowsage-dev-results",
        stage="analytics.public.training_stage",
        kms_key_arn=KEY_ARN,
        role="snowsage_role",
    )
    text = "\n".join(sql)
    statements = [s for s in sql if not s.startswith("--")]
    assert "OR REPLACE" not in "\n".join(statements)
    assert statements[0] == (
        "CREATE STORAGE INTEGRATION IF NOT EXISTS SNOWSAGE_DEV_TRAINING TYPE = EXTERNAL_STAGE "
        f"STORAGE_PROVIDER = 'S3' ENABLED = TRUE STORAGE_AWS_ROLE_ARN = '{ROLE_ARN}' "
        "STORAGE_ALLOWED_LOCATIONS = ('s3://snowsage-dev-results/training/runs/');"
    )
    assert (
        'CREATE STAGE IF NOT EXISTS "ANALYTICS"."PUBLIC"."TRAINING_STAGE" URL = '
        "'s3://snowsage-dev-results/training/runs/' STORAGE_INTEGRATION = SNOWSAGE_DEV_TRAINING "
        f"ENCRYPTION = (TYPE = 'AWS_SSE_KMS' KMS_KEY_ID = '{KEY_ARN}') FILE_FORMAT = (TYPE = PARQUET);"
    ) in statements
    assert 'GRANT USAGE ON STAGE "ANALYTICS"."PUBLIC"."TRAINING_STAGE" TO ROLE SNOWSAGE_ROLE;' in statements
    assert statements[-1] == "DESC INTEGRATION SNOWSAGE_DEV_TRAINING;"
    assert "CREATE OR REPLACE would issue a new external id" in text
    with pytest.raises(ExportInputError, match="unload role ARN is 'arn:aws:iam::1:role/x'"):
        unload_setup_sql(
            integration="i",
            role_arn="arn:aws:iam::1:role/x",
            bucket="b-b",
            stage="s",
            kms_key_arn=KEY_ARN,
            role="r",
        )
    with pytest.raises(ExportInputError, match="storage integration is 'my-int'"):
        unload_setup_sql(
            integration="my-int", role_arn=ROLE_ARN, bucket="bbb", stage="s", kms_key_arn=KEY_ARN, role="r"
        )


def test_source_grants_give_the_service_role_read_access():
    assert source_grants_sql(role="snowsage_role", table="analytics.public.housing") == [
        'GRANT USAGE ON DATABASE "ANALYTICS" TO ROLE SNOWSAGE_ROLE;',
        'GRANT USAGE ON SCHEMA "ANALYTICS"."PUBLIC" TO ROLE SNOWSAGE_ROLE;',
        'GRANT SELECT ON TABLE "ANALYTICS"."PUBLIC"."HOUSING" TO ROLE SNOWSAGE_ROLE;',
    ]


USER_ARN = "arn:aws:iam::123456789001:user/abc1-b-self1234"
EXTERNAL_ID = "MYACCOUNT_SFCRole=2_a123456/s0aBCDEfGHIJklmNoPq="
TEXT_TABLE = f"""
+---------------------------+---------------+------------------------------------------------+------------------+
| property                  | property_type | property_value                                 | property_default |
|---------------------------+---------------+------------------------------------------------+------------------|
| ENABLED                   | Boolean       | true                                           | false            |
| STORAGE_PROVIDER          | String        | S3                                             |                  |
| STORAGE_ALLOWED_LOCATIONS | List          | s3://snowsage-dev-results/training/runs/       | []               |
| STORAGE_AWS_IAM_USER_ARN  | String        | {USER_ARN}           |                  |
| STORAGE_AWS_ROLE_ARN      | String        | {ROLE_ARN}  |                  |
| STORAGE_AWS_EXTERNAL_ID   | String        | {EXTERNAL_ID}  |                  |
+---------------------------+---------------+------------------------------------------------+------------------+
"""
CSV = (
    '"property","property_type","property_value","property_default"\n'
    '"ENABLED","Boolean","true","false"\n'
    f'"STORAGE_AWS_IAM_USER_ARN","String","{USER_ARN}",""\n'
    f'"STORAGE_AWS_EXTERNAL_ID","String","{EXTERNAL_ID}",""\n'
)
TSV = f"ENABLED\tBoolean\ttrue\tfalse\nSTORAGE_AWS_IAM_USER_ARN\tString\t{USER_ARN}\t\nSTORAGE_AWS_EXTERNAL_ID\tString\t{EXTERNAL_ID}\t\n"


@pytest.mark.parametrize("pasted", [TEXT_TABLE, CSV, TSV], ids=["text-table", "csv", "tsv"])
def test_desc_integration_output_gives_the_two_trust_values(pasted):
    trust = parse_desc_integration(pasted)
    assert (trust.iam_user_arn, trust.external_id) == (USER_ARN, EXTERNAL_ID)
    assert trust.to_dict() == {"STORAGE_AWS_IAM_USER_ARN": USER_ARN, "STORAGE_AWS_EXTERNAL_ID": EXTERNAL_ID}


def test_desc_integration_without_the_values_says_which_is_missing():
    partial = "\n".join(line for line in TEXT_TABLE.splitlines() if "EXTERNAL_ID" not in line)
    with pytest.raises(ExportInputError, match=r"no STORAGE_AWS_EXTERNAL_ID value.*ENABLED"):
        parse_desc_integration(partial)
    with pytest.raises(ExportInputError, match="no STORAGE_AWS_IAM_USER_ARN and no STORAGE_AWS_EXTERNAL_ID"):
        parse_desc_integration("")
    with pytest.raises(ExportInputError, match="STORAGE_AWS_IAM_USER_ARN is 'arn:aws:iam::1:role/x'"):
        parse_desc_integration(CSV.replace(USER_ARN, "arn:aws:iam::1:role/x"))


def test_the_time_budget_bounds_statements_and_fails_fast_before_the_reserve():
    context = FakeContext(remaining_ms=100_000)
    budget = TimeBudget.from_lambda_context(context, reserve_ms=30_000)
    assert budget.session_parameters() == {"STATEMENT_TIMEOUT_IN_SECONDS": 70}
    budget.check(exporter="client", done="nothing")
    context.remaining = 29_000
    with pytest.raises(ExportTimeLimit) as err:
        budget.check(exporter="client", done="writing 10 rows of the train split")
    message = str(err.value)
    assert "time limit (100 s remained when it started" in message
    assert "after writing 10 rows of the train split" in message
    assert "exporter=unload" in message and "larger warehouse" in message and "narrow the query" in message
    assert TimeBudget.unlimited().session_parameters() == {}
