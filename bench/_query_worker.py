"""One fetch variant of query_to_dataframe in its own process, so peak RSS is that variant's alone.

python -m bench._query_worker --port P --variant arrow_all --out result.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings
from pathlib import Path

QUERY = "SELECT * FROM WIDE"


def _rss_mb() -> float:
    # /proc/self/statm: pages; field 2 is the resident set.
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--variant", choices=("arrow_all", "arrow_batches", "fetchall", "read_sql"), required=True
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import pandas as pd
    import snowflake.connector

    conn = snowflake.connector.connect(
        host="127.0.0.1",
        port=args.port,
        protocol="http",
        account="bench",
        user="bench",
        password="bench",  # noqa: S106 - fakesnow ignores credentials
        database="BENCH",
        schema="PUBLIC",
    )
    rss_before = _rss_mb()
    began = time.perf_counter()
    executed = began
    if args.variant == "read_sql":
        with warnings.catch_warnings():
            # pandas warns that it only tests SQLAlchemy and sqlite3; the DBAPI path works.
            warnings.simplefilter("ignore", UserWarning)
            df = pd.read_sql(QUERY, conn)
    else:
        cur = conn.cursor()
        cur.execute(QUERY)
        executed = time.perf_counter()
        if args.variant == "arrow_all":
            df = cur.fetch_pandas_all()
        elif args.variant == "arrow_batches":
            df = pd.concat(list(cur.fetch_pandas_batches()), ignore_index=True)
        else:
            rows = cur.fetchall()
            df = pd.DataFrame(rows, columns=[d.name for d in cur.description])
    done = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    fingerprint = {
        "shape": list(df.shape),
        "qty_sum": int(df["QTY"].sum()),
        "active": int(df["ACTIVE"].sum()),
        "price_sum": round(float(df["PRICE"].sum()), 3),
        "last_name": str(df["NAME"].iloc[-1]),
        "dtypes": {c: str(t) for c, t in df.dtypes.items()},
    }
    conn.close()
    args.out.write_text(
        json.dumps(
            {
                "total_s": done - began,
                "execute_s": executed - began if args.variant != "read_sql" else None,
                "fetch_s": done - executed if args.variant != "read_sql" else None,
                "rss_before_mb": rss_before,
                "peak_rss_mb": peak_mb,
                "fingerprint": fingerprint,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
