"""A CreateTrainingJob request run on this machine under the built-in XGBoost container's data contract.

What is honoured, and checked with one error naming the value and the fix:
- the request's shape (botocore's CreateTrainingJob model: what the API would refuse);
- File or FastFile input (Pipe is refused), S3Prefix data sources, ContentType
  ``application/x-parquet`` on every channel, a ``train`` channel, ``num_round``;
- ``ResourceConfig.InstanceCount`` hosts ``algo-1``..``algo-N``, each with its own
  ``input/data/<channel>/`` (keys kept relative to the channel's prefix) and
  ``input/config/{hyperparameters,resourceconfig,inputdataconfig}.json``;
- ``S3DataDistributionType``: ``FullyReplicated`` gives every host every object; ``ShardedByS3Key``
  deals the objects, sorted by key, round robin: host i of n gets keys i, i+n, i+2n, ... SageMaker
  documents only "about 1/n of the objects" per instance, by object not by bytes, and never the same
  object twice; round robin over sorted keys is our choice within that;
- every column numeric (integers, floats, booleans; a DECIMAL column is an error saying to cast it
  to FLOAT), label in column 0 with no NULLs, column names ignored, the same column count everywhere;
- a host that would get no train (or, with that channel, no validation) data is an error: the real
  container exits 0 with a warning there and the host is billed for nothing.

Training is ``xgboost-cpu==3.0.5`` (the image's version) in N child processes joined by XGBoost's
collective tracker, each reading only its own directories. The final value of every evaluated metric
(``train:<m>``, ``validation:<m>``; ``eval_metric`` from the hyperparameters, else XGBoost's default for
the objective, as in the container) becomes ``FinalMetricDataList``; every rank must end with the same
booster, and rank 0's goes to ``<S3OutputPath>/<job>/output/model.tar.gz`` (``xgboost-model`` inside).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sandbox.training import _worker
from sandbox.training.definition import sagemaker_model
from snowsage.aws import error_code

PARQUET = "application/x-parquet"
REPO_ROOT = Path(__file__).resolve().parents[2]
_BOOTSTRAP = "import sys; from sandbox.training._worker import main; main(sys.argv[1])"
# Hyperparameters the container reads itself instead of handing them to XGBoost.
CONTAINER_HYPERPARAMETERS = ("num_round", "early_stopping_rounds", "save_model_on_termination", "csv_weights")


class TrainingError(ValueError):
    """The request, its data or a host's training is not what the built-in container would accept."""


@dataclass(frozen=True)
class HostRun:
    host: str  # algo-1 ...
    objects: Mapping[str, tuple[str, ...]]  # channel -> the s3:// URIs this host received
    rows: Mapping[str, int]  # channel -> rows
    model_sha256: str = ""


@dataclass(frozen=True)
class TrainingResult:
    job_name: str
    model_uri: str
    metrics: Mapping[str, float]  # "validation:rmse" -> final value
    rounds: int
    hosts: tuple[HostRun, ...]
    properties: Mapping[str, Any] = field(default_factory=dict)  # DescribeTrainingJob-shaped


class LocalTrainer:
    """The runner's Training executor: ``LocalTrainer(s3=boto3 S3 client, work_dir=Path)``."""

    def __init__(self, *, s3: Any, work_dir: Path, timeout: float = 600.0) -> None:
        self.s3, self.work_dir, self.timeout = s3, Path(work_dir), timeout

    def __call__(self, *, job_name: str, request: Mapping[str, Any]) -> TrainingResult:
        return train_locally(
            job_name=job_name, request=request, s3=self.s3, work_dir=self.work_dir, timeout=self.timeout
        )


def train_locally(
    *, job_name: str, request: Mapping[str, Any], s3: Any, work_dir: Path, timeout: float = 600.0
) -> TrainingResult:
    """Run the training job; ``work_dir/<job_name>/algo-<i>/`` is each host's /opt/ml."""
    started = datetime.now(timezone.utc)
    _check_shape(job_name, request)
    _check_input_mode(request)
    hosts = [f"algo-{i + 1}" for i in range(int(request["ResourceConfig"]["InstanceCount"]))]
    channels = _channels(request)
    hyper = dict(request.get("HyperParameters") or {})
    params, num_round, early_stopping = _xgboost_params(hyper)

    job_dir = Path(work_dir) / job_name
    shutil.rmtree(job_dir, ignore_errors=True)
    assignments = {name: _assign(s3, name, ch, hosts) for name, ch in channels.items()}
    host_rows: dict[str, dict[str, int]] = {}
    columns: dict[int, str] = {}  # column count -> first file seen with it
    for i, host in enumerate(hosts):
        base = job_dir / host
        _write_config(base, host, hosts, request, hyper)
        host_rows[host] = {}
        for name in channels:
            bucket, prefix = _split(channels[name]["uri"])
            rows = 0
            for key in assignments[name][i]:
                target = base / "input" / "data" / name / (key[len(prefix) :].lstrip("/") or Path(key).name)
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, key, str(target))
                rows += _check_parquet(target, f"s3://{bucket}/{key}", columns)
            if rows == 0:
                raise TrainingError(
                    f"host {host} gets no {name} rows from {channels[name]['uri']}: its share of the objects is empty files"
                )
            host_rows[host][name] = rows

    ordered = ["train", *(c for c in channels if c != "train")]
    results = _train(job_dir, hosts, ordered, params, num_round, early_stopping, timeout)
    digests = {h: r["model_sha256"] for h, r in results.items()}
    if len(set(digests.values())) != 1:
        raise TrainingError(
            f"the hosts ended with different models ({digests}): they did not train as one job"
        )

    model_uri = _upload_model(s3, job_dir / hosts[0] / "model", request["OutputDataConfig"], job_name)
    first = results[hosts[0]]
    metrics = {k: float(v) for k, v in first["metrics"].items()}
    now = datetime.now(timezone.utc)
    host_runs = tuple(
        HostRun(
            host=h,
            objects={
                name: tuple(f"s3://{_split(channels[name]['uri'])[0]}/{k}" for k in assignments[name][i])
                for name in channels
            },
            rows=host_rows[h],
            model_sha256=digests[h],
        )
        for i, h in enumerate(hosts)
    )
    properties = {
        **{k: v for k, v in request.items() if k != "TrainingJobName"},
        "TrainingJobName": job_name,
        "TrainingJobArn": f"arn:aws:sagemaker:local:000000000000:training-job/{job_name}",
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "ModelArtifacts": {"S3ModelArtifacts": model_uri},
        "FinalMetricDataList": [
            {"MetricName": k, "Value": v, "Timestamp": now.isoformat()} for k, v in metrics.items()
        ],
        "CreationTime": started.isoformat(),
        "TrainingStartTime": started.isoformat(),
        "TrainingEndTime": now.isoformat(),
        "TrainingTimeInSeconds": int((now - started).total_seconds()),
        "BillableTimeInSeconds": int((now - started).total_seconds()) * len(hosts),
    }
    return TrainingResult(job_name, model_uri, metrics, int(first["rounds"]), host_runs, properties)


def _check_shape(job_name: str, request: Mapping[str, Any]) -> None:
    from botocore.validate import ParamValidator

    shape = sagemaker_model().operation_model("CreateTrainingJob").input_shape
    report = ParamValidator().validate({**request, "TrainingJobName": job_name}, shape)
    if report.has_errors():
        raise TrainingError(f"CreateTrainingJob would refuse this request: {report.generate_report()}")


def _check_input_mode(request: Mapping[str, Any]) -> None:
    default = request["AlgorithmSpecification"].get("TrainingInputMode", "File")
    for ch in request["InputDataConfig"]:
        mode = ch.get("InputMode", default)
        if mode not in ("File", "FastFile"):
            raise TrainingError(
                f"channel {ch['ChannelName']!r} uses InputMode {mode!r}; the built-in XGBoost reads Parquet in File or FastFile mode"
            )


def _channels(request: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    channels: dict[str, dict[str, str]] = {}
    for ch in request["InputDataConfig"]:
        name = ch["ChannelName"]
        source = ch["DataSource"].get("S3DataSource")
        if source is None:
            raise TrainingError(
                f"channel {name!r} has no S3DataSource; the sandbox reads channels from S3 only"
            )
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise TrainingError(f"channel {name!r} has S3DataType {source['S3DataType']!r}; use S3Prefix")
        if ch.get("ContentType") != PARQUET:
            raise TrainingError(
                f"channel {name!r} has ContentType {ch.get('ContentType')!r}; the export writes Parquet: set {PARQUET!r}"
            )
        if ch.get("CompressionType", "None") != "None":
            raise TrainingError(
                f"channel {name!r} has CompressionType {ch['CompressionType']!r}; Parquet is read uncompressed"
            )
        dist = source.get("S3DataDistributionType", "FullyReplicated")
        channels[name] = {"uri": source["S3Uri"], "distribution": dist}
    if "train" not in channels:
        raise TrainingError(
            f"the request has channels {sorted(channels)} but no 'train' channel, which the built-in XGBoost requires"
        )
    return channels


def _xgboost_params(hyper: Mapping[str, str]) -> tuple[dict[str, Any], int, int | None]:
    def integer(key: str) -> int:
        try:
            return int(hyper[key])
        except ValueError:
            raise TrainingError(f"hyperparameter {key}={hyper[key]!r} is not an integer") from None

    if "num_round" not in hyper:
        raise TrainingError(
            "hyperparameter 'num_round' is missing; the built-in XGBoost requires it (e.g. num_round=100)"
        )
    params: dict[str, Any] = {
        k: v for k, v in hyper.items() if k not in CONTAINER_HYPERPARAMETERS and not k.startswith("_")
    }
    if "eval_metric" in params:
        params["eval_metric"] = [m.strip() for m in str(params["eval_metric"]).split(",") if m.strip()]
    params.setdefault("nthread", "1")  # N hosts share this machine's cores
    early = integer("early_stopping_rounds") if "early_stopping_rounds" in hyper else None
    return params, integer("num_round"), early


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or not uri[5:].split("/")[0]:
        raise TrainingError(f"S3Uri {uri!r} is not an s3://bucket/prefix URI")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix


def _assign(s3: Any, name: str, channel: Mapping[str, str], hosts: list[str]) -> list[list[str]]:
    bucket, prefix = _split(channel["uri"])
    from botocore.exceptions import ClientError

    try:
        keys = sorted(
            obj["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
            if not obj["Key"].endswith("/")
        )
    except ClientError as exc:
        code = error_code(exc) or "error"
        raise TrainingError(f"channel {name!r}: cannot list {channel['uri']}: {code}") from None
    if not keys:
        raise TrainingError(f"channel {name!r}: no objects under {channel['uri']}")
    n = len(hosts)
    if channel["distribution"] == "FullyReplicated":
        return [list(keys) for _ in hosts]
    if channel["distribution"] != "ShardedByS3Key":
        raise TrainingError(
            f"channel {name!r} has S3DataDistributionType {channel['distribution']!r}; use FullyReplicated or ShardedByS3Key"
        )
    shares = [keys[i::n] for i in range(n)]
    for host, share in zip(hosts, shares, strict=True):
        if not share:
            raise TrainingError(
                f"host {host} gets no {name} data: ShardedByS3Key deals {len(keys)} object(s) under {channel['uri']} "
                f"over {n} instances; write at least {n} files (one per instance) or lower InstanceCount"
            )
    return shares


def _check_parquet(path: Path, uri: str, columns: dict[int, str]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
        rows = pq.read_metadata(path).num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise TrainingError(
            f"{uri} is not a Parquet file ({exc}); every object under a channel's prefix must be one"
        ) from None
    for f in schema:
        t = f.type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            fix = (
                "cast it to FLOAT in the export query"
                if pa.types.is_decimal(t)
                else "drop it or encode it as a number"
            )
            raise TrainingError(
                f"{uri}: column {f.name!r} is {t}, not numeric; the built-in XGBoost reads all-numeric Parquet: {fix}"
            )
    if not columns:
        columns[len(schema)] = uri
    elif len(schema) not in columns:
        ((count, first),) = columns.items()
        raise TrainingError(
            f"{uri} has {len(schema)} columns but {first} has {count}; every file needs the label and the same features"
        )
    if len(schema) < 2:
        raise TrainingError(
            f"{uri} has {len(schema)} column(s); it needs the label in column 0 and at least one feature"
        )
    if rows and pq.read_table(path, columns=[schema[0].name]).column(0).null_count:
        raise TrainingError(
            f"{uri}: the label column {schema[0].name!r} (column 0) has NULLs; filter them out in the export query"
        )
    return int(rows)


def _write_config(
    base: Path, host: str, hosts: list[str], request: Mapping[str, Any], hyper: Mapping[str, str]
) -> None:
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(dict(hyper)))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": host, "hosts": hosts, "network_interface_name": "lo"})
    )
    (config / "inputdataconfig.json").write_text(
        json.dumps(
            {
                c["ChannelName"]: {k: v for k, v in c.items() if k != "ChannelName"}
                for c in request["InputDataConfig"]
            },
            default=str,
        )
    )


def _train(
    job_dir: Path,
    hosts: list[str],
    channels: list[str],
    params: dict[str, Any],
    num_round: int,
    early_stopping: int | None,
    timeout: float,
) -> dict[str, dict[str, Any]]:
    from xgboost.tracker import RabitTracker

    tracker = RabitTracker(n_workers=len(hosts), host_ip="127.0.0.1", port=0, sortby="task")
    tracker.start()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    deadline = time.monotonic() + timeout
    try:
        for rank, host in enumerate(hosts):
            base = job_dir / host
            kwargs = {
                "rank": rank,
                "host_dir": str(base),
                "channels": channels,
                "params": params,
                "num_round": num_round,
                "early_stopping_rounds": early_stopping,
                "tracker_args": tracker.worker_args(),
                "result_path": str(base / "result.json"),
            }
            (base / "worker.json").write_text(json.dumps(kwargs))
            with (base / "worker.log").open("wb") as log:
                procs[host] = subprocess.Popen(
                    [sys.executable, "-c", _BOOTSTRAP, str(base / "worker.json")],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=base,
                )
        while any(p.poll() is None for p in procs.values()):
            if any(p.returncode not in (None, 0) for p in procs.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        failed = [h for h, p in procs.items() if p.returncode not in (None, 0)]
        if failed:
            raise TrainingError(
                f"host {failed[0]} failed: {_host_error(job_dir / failed[0], procs[failed[0]])}"
            )
        running = [h for h, p in procs.items() if p.returncode is None]
        if running:
            raise TrainingError(
                f"training did not finish within {timeout:.0f} s (still running: {', '.join(running)})"
            )
        results = {h: json.loads((job_dir / h / "result.json").read_text()) for h in hosts}
        tracker.wait_for(timeout=max(1, int(deadline - time.monotonic())))
        return results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        with contextlib.suppress(Exception):
            tracker.free()


def _host_error(base: Path, proc: subprocess.Popen[bytes]) -> str:
    result = base / "result.json"
    if result.exists():
        return str(json.loads(result.read_text()).get("error"))
    tail = (base / "worker.log").read_text(errors="replace").strip().splitlines()[-3:]
    return f"exit code {proc.returncode}: {' / '.join(tail) or 'no output'} (log: {base / 'worker.log'})"


def _upload_model(s3: Any, model_dir: Path, output: Mapping[str, Any], job_name: str) -> str:
    bucket, prefix = _split(output["S3OutputPath"].rstrip("/"))
    key = "/".join(p for p in (prefix, job_name, "output", "model.tar.gz") if p)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted(model_dir.iterdir()):
            tar.add(f, arcname=f.name)
    extra: dict[str, str] = {}
    if output.get("KmsKeyId"):
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": output["KmsKeyId"]}
    s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue(), **extra)
    return f"s3://{bucket}/{key}"


def model_digest(tar_bytes: bytes) -> str:
    """sha256 of the xgboost-model inside a model.tar.gz (what HostRun.model_sha256 is of)."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:gz") as tar:
        member = tar.extractfile(_worker.MODEL_FILE)
        if member is None:
            raise TrainingError(f"the archive holds no {_worker.MODEL_FILE}")
        return hashlib.sha256(member.read()).hexdigest()
