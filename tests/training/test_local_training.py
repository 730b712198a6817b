"""The local trainer honours the built-in XGBoost container's data contract on N hosts (moto S3)."""

from __future__ import annotations

import io
import re
import tarfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost as xgb

from sandbox.training import TrainingError, TrainingResult, train_locally
from sandbox.training.local_trainer import model_digest

REGION = "us-east-1"
TRAIN_FILES, VALIDATION_FILES, ROWS_PER_FILE = 5, 2, 40


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def housing_table(rows: int, seed: int) -> pa.Table:
    """PRICE (the label, first) from two features with noise: a model can learn it."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.uniform(0, 10, rows), rng.uniform(0, 5, rows)
    price = 3 * x1 - 2 * x2 + rng.normal(0, 0.5, rows)
    return pa.table({"PRICE": price, "ROOMS": x1, "AGE": x2})


def write_dataset(
    s3: Any, bucket: str, prefix: str, *, train_files: int = TRAIN_FILES
) -> dict[str, list[str]]:
    """train/ and validation/ shards under s3://bucket/prefix/, as the export writes them; the keys."""
    keys: dict[str, list[str]] = {"train": [], "validation": []}
    for channel, count in (("train", train_files), ("validation", VALIDATION_FILES)):
        for i in range(count):
            key = f"{prefix}/{channel}/part-{i:03d}.parquet"
            seed = i if channel == "train" else 100 + i
            s3.put_object(Bucket=bucket, Key=key, Body=parquet_bytes(housing_table(ROWS_PER_FILE, seed)))
            keys[channel].append(key)
    return keys


def training_request(
    bucket: str, prefix: str, *, instances: int = 2, hyper: Mapping[str, str] | None = None, **overrides: Any
) -> dict[str, Any]:
    """A CreateTrainingJob request as the pipeline's Training step sends it."""

    def channel(name: str, distribution: str) -> dict[str, Any]:
        return {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"s3://{bucket}/{prefix}/{name}/",
                    "S3DataDistributionType": distribution,
                }
            },
            "ContentType": "application/x-parquet",
            "InputMode": "File",
        }

    request = {
        "AlgorithmSpecification": {
            "TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5",
            "TrainingInputMode": "File",
        },
        "RoleArn": "arn:aws:iam::123456789012:role/training",
        "HyperParameters": dict(
            hyper or {"objective": "reg:squarederror", "num_round": "20", "max_depth": "3"}
        ),
        "InputDataConfig": [channel("train", "ShardedByS3Key"), channel("validation", "FullyReplicated")],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/{prefix}/model"},
        "ResourceConfig": {"InstanceCount": instances, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    request.update(overrides)
    return request


@pytest.fixture(scope="module")
def s3(aws_environment: dict[str, str]) -> Any:
    import boto3

    return boto3.client("s3", region_name=REGION)


@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    name = f"training-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def dataset(s3: Any, bucket: str) -> dict[str, list[str]]:
    return write_dataset(s3, bucket, "runs/one")


@pytest.fixture(scope="module")
def trained(
    s3: Any, bucket: str, dataset: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainingResult, Path]:
    work = tmp_path_factory.mktemp("hosts")
    return train_locally(
        job_name="job-one", request=training_request(bucket, "runs/one"), s3=s3, work_dir=work
    ), work


def test_two_hosts_get_disjoint_train_objects_covering_all_and_the_same_validation_set(
    trained: tuple[TrainingResult, Path], dataset: dict[str, list[str]], bucket: str
) -> None:
    result, work = trained
    assert [h.host for h in result.hosts] == ["algo-1", "algo-2"]
    train = [set(h.objects["train"]) for h in result.hosts]
    assert train[0].isdisjoint(train[1]) and all(train)
    assert train[0] | train[1] == {f"s3://{bucket}/{k}" for k in dataset["train"]}
    assert abs(len(train[0]) - len(train[1])) <= 1  # about 1/n of the objects each
    for host in result.hosts:
        assert set(host.objects["validation"]) == {f"s3://{bucket}/{k}" for k in dataset["validation"]}
        # what the host reads is in its own input/data/<channel>, and only its share
        on_disk = sorted(
            p.name for p in (work / "job-one" / host.host / "input" / "data" / "train").iterdir()
        )
        assert on_disk == sorted(u.rsplit("/", 1)[1] for u in host.objects["train"])
        assert host.rows == {
            "train": ROWS_PER_FILE * len(host.objects["train"]),
            "validation": ROWS_PER_FILE * 2,
        }
    assert sum(h.rows["train"] for h in result.hosts) == ROWS_PER_FILE * TRAIN_FILES


def test_both_ranks_end_with_the_booster_written_to_s3(trained: tuple[TrainingResult, Path], s3: Any) -> None:
    result, _ = trained
    digests = {h.model_sha256 for h in result.hosts}
    assert len(digests) == 1 and "" not in digests
    assert result.model_uri.endswith("/runs/one/model/job-one/output/model.tar.gz")
    bucket, key = result.model_uri[5:].split("/", 1)
    assert model_digest(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) == digests.pop()


def test_final_validation_metric_is_the_models_rmse_on_the_validation_set(
    trained: tuple[TrainingResult, Path], s3: Any, dataset: dict[str, list[str]], bucket: str
) -> None:
    result, _ = trained
    bucket_name, key = result.model_uri[5:].split("/", 1)
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket_name, Key=key)["Body"].read())) as tar:
        member = tar.extractfile("xgboost-model")
        assert member is not None
        booster = xgb.Booster(model_file=bytearray(member.read()))
    table = pa.concat_tables(
        pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=k)["Body"].read()))
        for k in dataset["validation"]
    ).to_pandas()
    predicted = booster.predict(xgb.DMatrix(table.iloc[:, 1:].to_numpy()))
    rmse = float(np.sqrt(np.mean((predicted - table["PRICE"].to_numpy()) ** 2)))
    assert result.metrics["validation:rmse"] == pytest.approx(rmse, rel=1e-4)
    assert rmse < float(np.std(table["PRICE"]))  # it learned something
    assert result.rounds == 20
    metric_list = {m["MetricName"]: m["Value"] for m in result.properties["FinalMetricDataList"]}
    assert metric_list["validation:rmse"] == result.metrics["validation:rmse"] and "train:rmse" in metric_list
    assert result.properties["ModelArtifacts"] == {"S3ModelArtifacts": result.model_uri}


def test_a_binary_objective_with_auc_reports_validation_auc(
    s3: Any, bucket: str, dataset: dict[str, list[str]], tmp_path: Path
) -> None:
    # the same features, the label turned into a class the features explain
    for key in dataset["train"] + dataset["validation"]:
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        label = pa.array((table["PRICE"].to_numpy() > 8).astype(np.int64))
        s3.put_object(
            Bucket=bucket,
            Key=key.replace("runs/one", "runs/binary"),
            Body=parquet_bytes(table.set_column(0, "ABOVE", label)),
        )
    hyper = {"objective": "binary:logistic", "eval_metric": "auc", "num_round": "10"}
    result = train_locally(
        job_name="job-binary",
        request=training_request(bucket, "runs/binary", hyper=hyper),
        s3=s3,
        work_dir=tmp_path,
    )
    assert set(result.metrics) == {"train:auc", "validation:auc"}
    assert 0.8 < result.metrics["validation:auc"] <= 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r["InputDataConfig"][0].update(ContentType="text/csv"),
            "channel 'train' has ContentType 'text/csv'",
        ),
        (
            lambda r: r["InputDataConfig"][1].update(InputMode="Pipe"),
            "channel 'validation' uses InputMode 'Pipe'",
        ),
        (lambda r: r["HyperParameters"].pop("num_round"), "hyperparameter 'num_round' is missing"),
        (lambda r: r["HyperParameters"].update(num_round="many"), "num_round='many' is not an integer"),
        (lambda r: r.pop("RoleArn"), "RoleArn"),
        (lambda r: r["InputDataConfig"].pop(0), "no 'train' channel"),
        (
            lambda r: r["InputDataConfig"][0]["DataSource"]["S3DataSource"].update(
                S3Uri="s3://nowhere-at-all/x/"
            ),
            "channel 'train': cannot list s3://nowhere-at-all/x/",
        ),
    ],
    ids=[
        "content-type",
        "pipe-mode",
        "no-num-round",
        "bad-num-round",
        "request-shape",
        "no-train",
        "no-objects",
    ],
)
def test_a_request_the_container_would_not_run_names_the_value(
    change: Any, message: str, s3: Any, bucket: str, dataset: dict[str, list[str]], tmp_path: Path
) -> None:
    request = training_request(bucket, "runs/one")
    change(request)
    with pytest.raises(TrainingError, match=re.escape(message)):
        train_locally(job_name="job-bad", request=request, s3=s3, work_dir=tmp_path)


def test_a_host_with_no_train_objects_is_an_error_naming_it(s3: Any, bucket: str, tmp_path: Path) -> None:
    write_dataset(s3, bucket, "runs/small", train_files=1)
    with pytest.raises(TrainingError, match=r"host algo-2 gets no train data: .*1 object.*at least 2 files"):
        train_locally(
            job_name="job-small", request=training_request(bucket, "runs/small"), s3=s3, work_dir=tmp_path
        )


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (pa.array(["a"] * ROWS_PER_FILE), r"column 'CITY' is string, not numeric.*drop it or encode it"),
        (
            pa.array([1] * ROWS_PER_FILE, type=pa.decimal128(10, 2)),
            r"column 'CITY' is decimal128\(10, 2\).*cast it to FLOAT",
        ),
    ],
    ids=["string", "decimal"],
)
def test_a_non_numeric_column_is_an_error_naming_it(
    column: pa.Array, message: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    prefix = f"runs/typed-{uuid.uuid4().hex[:6]}"
    write_dataset(s3, bucket, prefix)
    table = housing_table(ROWS_PER_FILE, 7).append_column("CITY", column)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/train/part-009.parquet", Body=parquet_bytes(table))
    with pytest.raises(TrainingError, match=f"{prefix}/train/part-009.parquet: {message}"):
        train_locally(
            job_name="job-typed", request=training_request(bucket, prefix), s3=s3, work_dir=tmp_path
        )


def test_a_null_label_is_an_error_naming_the_file(s3: Any, bucket: str, tmp_path: Path) -> None:
    prefix = "runs/nulls"
    write_dataset(s3, bucket, prefix)
    table = housing_table(ROWS_PER_FILE, 8)
    table = table.set_column(0, "PRICE", pa.array([None, *table["PRICE"].to_pylist()[1:]], type=pa.float64()))
    s3.put_object(Bucket=bucket, Key=f"{prefix}/validation/part-000.parquet", Body=parquet_bytes(table))
    with pytest.raises(
        TrainingError, match=r"validation/part-000.parquet: the label column 'PRICE' \(column 0\) has NULLs"
    ):
        train_locally(
            job_name="job-nulls", request=training_request(bucket, prefix), s3=s3, work_dir=tmp_path
        )


def test_a_host_that_fails_to_train_fails_the_job_naming_it(
    s3: Any, bucket: str, dataset: Any, tmp_path: Path
) -> None:
    hyper = {"objective": "reg:no-such-objective", "num_round": "5"}
    request = training_request(bucket, "runs/one", hyper=hyper)
    with pytest.raises(TrainingError, match=r"host algo-\d failed: XGBoostError: .*reg:no-such-objective"):
        train_locally(job_name="job-fails", request=request, s3=s3, work_dir=tmp_path, timeout=60)
