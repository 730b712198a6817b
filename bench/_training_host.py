"""One process of the training-data benchmarks, so each one's peak RSS (VmHWM, see peak_rss_mb) is its own.

    python -m bench._training_host baseline --port P --table T --sample 50 --out result.json
    python -m bench._training_host export --port P --table T --bucket B --execution-id E --files 2 --hosts 2 --out r.json
    python -m bench._training_host host --bucket B --train-prefix P --validation-prefix P --rank 0 --hosts 2 --out r.json
    python -m bench._training_host writer --rows N --bucket B --execution-id E --files 2 --out r.json

- ``baseline``: a data scientist's training host: ``pd.read_sql("select * from T sample (50)")`` on a
  connector connection, ``dropna()``, then the DMatrix XGBoost trains on; the ids it holds go to
  ``<out>.ids.npy``.
- ``export``: the product's exporter (snowsage.training.export, client mode), as the export Lambda
  runs it.
- ``host``: one training host of the product: its ShardedByS3Key share of the train channel and the
  FullyReplicated validation channel, dealt by the sandbox trainer's rule (local_trainer._assign),
  downloaded as File mode does and read by the container's reader (_worker._matrix); the labels of
  the rows it holds go to ``<out>.{train,validation}.npy`` (read after the clock stops).
- ``writer``: the client exporter's write path alone (write_split), fed ``--rows`` generated rows
  in connector-sized batches, to show its memory does not grow with the rows.

AWS calls go wherever AWS_ENDPOINT_URL points (the benchmark passes a counting relay before moto).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

BEGAN = time.perf_counter()  # as close to the process start as Python gets

LABEL = "TARGET"
ID = "ID"
FEATURES = tuple(f"F{i}" for i in range(1, 10))
DATABASE, SCHEMA = "BENCH", "PUBLIC"


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MiB.

    Not ru_maxrss: on Linux that carries over the parent's high-water mark through fork + exec, so a
    child of a big benchmark process would report at least the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB there too


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Clock:
    """Seconds spent inside the calls of a wrapped object (and of iterators they return), by name."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def wrap(self, obj: Any, bucket: str, methods: frozenset[str]) -> Any:
        clock = self

        class Timed:
            def __getattr__(self, name: str) -> Any:
                attr = getattr(obj, name)
                if name not in methods or not callable(attr):
                    return attr

                def call(*args: Any, **kwargs: Any) -> Any:
                    began = time.perf_counter()
                    try:
                        out = attr(*args, **kwargs)
                    finally:
                        clock.add(bucket, time.perf_counter() - began)
                    return clock.iterate(out, bucket) if name.startswith("fetch_arrow") else out

                return call

        return Timed()

    def iterate(self, items: Any, bucket: str) -> Any:
        iterator = iter(items)
        while True:
            began = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                self.add(bucket, time.perf_counter() - began)
            yield item

    def add(self, bucket: str, seconds: float) -> None:
        self.spent[bucket] = self.spent.get(bucket, 0.0) + seconds


SNOWFLAKE_CALLS = frozenset({"execute", "fetchone", "fetchall", "fetch_arrow_batches"})
S3_CALLS = frozenset(
    {
        "put_object",
        "create_multipart_upload",
        "upload_part",
        "complete_multipart_upload",
        "list_objects_v2",
        "get_object",
    }
)


def connect(port: int, *, in_schema: bool = True) -> Any:
    """A connector connection to fakesnow on ``port`` (in BENCH.PUBLIC unless ``in_schema=False``)."""
    import snowflake.connector

    where = {"database": DATABASE, "schema": SCHEMA} if in_schema else {}
    return snowflake.connector.connect(
        host="127.0.0.1",
        port=port,
        protocol="http",
        account="bench",
        user="bench",
        password="bench",  # noqa: S106 - fakesnow ignores credentials
        network_timeout=600,
        **where,
    )


def export_spec(args: argparse.Namespace, *, table: str, instance_count: int) -> Any:
    from snowsage.training import ExportSpec

    return ExportSpec(
        execution_id=args.execution_id,
        bucket=args.bucket,
        label=LABEL,
        id_column=ID,
        table=table,
        files=args.files,
        instance_count=instance_count,
    )


def baseline(args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    import numpy as np
    import pandas as pd
    import xgboost as xgb

    imported, floor = time.perf_counter(), rss_mb()
    conn = connect(args.port)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pandas: only SQLAlchemy and sqlite3 are tested
        df = pd.read_sql(f"select * from {args.table} sample ({args.sample})", conn)  # noqa: S608 - our table
    conn.close()
    read = time.perf_counter()
    fetched_rows = len(df)
    df = df.dropna()
    matrix = xgb.DMatrix(df[list(FEATURES)], label=df[LABEL])
    done = time.perf_counter()
    np.save(f"{args.out}.ids.npy", df[ID].to_numpy(dtype=np.int64))
    return {
        "import_s": imported - BEGAN,
        "rss_after_imports_mb": floor,
        "work_s": done - imported,
        "read_sql_s": read - imported,
        "fetched_rows": fetched_rows,
        "rows": matrix.num_row(),
        "columns": matrix.num_col(),
    }


def export(args: argparse.Namespace) -> dict[str, Any]:
    import boto3

    from snowsage.training import export as run_export

    imported, floor = time.perf_counter(), rss_mb()
    spec = export_spec(args, table=args.table, instance_count=args.hosts)
    conn = connect(args.port)
    # Where the time goes: inside the connector's calls, inside S3's, and the rest (Parquet encoding).
    clock = Clock()

    class Connection:
        def cursor(self) -> Any:
            return clock.wrap(conn.cursor(), "snowflake_s", SNOWFLAKE_CALLS)

    s3 = clock.wrap(boto3.client("s3"), "s3_s", S3_CALLS)
    try:
        result = run_export(spec, connection=Connection(), s3=s3)
    finally:
        conn.close()
    done = time.perf_counter()
    return {
        "import_s": imported - BEGAN,
        "rss_after_imports_mb": floor,
        "work_s": done - imported,
        **clock.spent,
        "result": result.to_dict(),
    }


def host_share(
    s3: Any, bucket: str, prefix: str, *, name: str, distribution: str, rank: int, hosts: int
) -> list[str]:
    """The keys host ``rank`` of ``hosts`` receives from a channel: the sandbox trainer's rule itself."""
    from sandbox.training.local_trainer import _assign

    channel = {"uri": f"s3://{bucket}/{prefix}", "distribution": distribution}
    return _assign(s3, name, channel, [f"algo-{i + 1}" for i in range(hosts)])[rank]


def host(args: argparse.Namespace) -> dict[str, Any]:
    import boto3
    import numpy as np
    import pandas  # noqa: F401 - the reader's own imports, done before the floor as the baseline's are
    import pyarrow.parquet as pq
    import xgboost  # noqa: F401

    from sandbox.training._worker import _matrix

    imported, floor = time.perf_counter(), rss_mb()
    s3 = boto3.client("s3")
    channels = {
        "train": (args.train_prefix, "ShardedByS3Key"),
        "validation": (args.validation_prefix, "FullyReplicated"),
    }
    out: dict[str, Any] = {"objects": {}, "rows": {}}
    with tempfile.TemporaryDirectory(prefix="snowsage-bench-host-") as tmp:
        base = Path(tmp) / "input" / "data"
        matrices = {}
        for name, (prefix, distribution) in channels.items():
            keys = host_share(
                s3,
                args.bucket,
                prefix,
                name=name,
                distribution=distribution,
                rank=args.rank,
                hosts=args.hosts,
            )
            for key in keys:
                target = base / name / key[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(args.bucket, key, str(target))
            matrices[name] = _matrix(base / name)
            out["objects"][name] = keys
            out["rows"][name] = matrices[name].num_row()
        done = time.perf_counter()
        for name in channels:  # the label (column 0) of every row held, in float64, to find its id
            files = sorted(p for p in (base / name).rglob("*") if p.is_file())
            labels = [
                pq.read_table(f, columns=pq.read_schema(f).names[:1]).column(0).to_numpy() for f in files
            ]
            np.save(f"{args.out}.{name}.npy", np.concatenate(labels))
    return {**out, "import_s": imported - BEGAN, "rss_after_imports_mb": floor, "work_s": done - imported}


def writer(args: argparse.Namespace) -> dict[str, Any]:
    import boto3
    import numpy as np
    import pyarrow as pa

    from snowsage.training import TimeBudget, write_split
    from snowsage.training.export import DEFAULT_BATCH_ROWS

    imported, floor = time.perf_counter(), rss_mb()
    spec = export_spec(args, table="T", instance_count=args.files)  # the table is never read
    columns = (LABEL, *FEATURES)
    rng = np.random.default_rng(11)

    def batches() -> Any:
        for start in range(0, args.rows, DEFAULT_BATCH_ROWS):
            n = min(DEFAULT_BATCH_ROWS, args.rows - start)
            yield pa.record_batch([pa.array(rng.random(n)) for _ in columns], names=list(columns))

    out = write_split(
        batches(),
        s3=boto3.client("s3"),
        spec=spec,
        split="train",
        columns=columns,
        budget=TimeBudget.unlimited(),
    )
    done = time.perf_counter()
    return {
        "import_s": imported - BEGAN,
        "rss_after_imports_mb": floor,
        "work_s": done - imported,
        "rows": out.rows,
        "files": len(out.files),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    for role in ("baseline", "export", "host", "writer"):
        p = sub.add_parser(role)
        p.add_argument("--out", type=Path, required=True)
        if role in ("baseline", "export"):
            p.add_argument("--port", type=int, required=True)
            p.add_argument("--table", required=True)
        if role in ("export", "writer"):
            p.add_argument("--execution-id", required=True)
            p.add_argument("--files", type=int, required=True)
        if role in ("export", "host", "writer"):
            p.add_argument("--bucket", required=True)
        if role in ("export", "host"):
            p.add_argument("--hosts", type=int, required=True)
    sub.choices["baseline"].add_argument("--sample", type=int, default=50)
    sub.choices["host"].add_argument("--train-prefix", required=True)
    sub.choices["host"].add_argument("--validation-prefix", required=True)
    sub.choices["host"].add_argument("--rank", type=int, required=True)
    sub.choices["writer"].add_argument("--rows", type=int, required=True)
    args = parser.parse_args()

    result = {"baseline": baseline, "export": export, "host": host, "writer": writer}[args.role](args)
    result["peak_rss_mb"] = peak_rss_mb()
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
