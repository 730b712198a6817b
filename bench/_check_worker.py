"""Two invocations of the connectivity check handler in one fresh process: cold, then warm.

Run by bench/check_latency.py with SNOWSAGE_SETTINGS and AWS_ENDPOINT_URL (moto) set; writes
{"import_s", "first_s", "second_s", "statuses"} to the file given.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

HANDLER = Path(__file__).resolve().parents[1] / "lambda" / "connectivity_check" / "handler.py"
CONTEXT = SimpleNamespace(
    function_name="snowsage-bench-check",
    memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:snowsage-bench-check",
    aws_request_id="bench",
)


def main() -> int:
    out = Path(sys.argv[1])
    # Powertools writes JSON logs and EMF to stdout: keep them out of the timing output.
    with contextlib.redirect_stdout(io.StringIO()):
        began = time.perf_counter()
        spec = importlib.util.spec_from_file_location("handler", HANDLER)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        imported = time.perf_counter()
        first = module.handler({}, CONTEXT)
        first_done = time.perf_counter()
        second = module.handler({}, CONTEXT)
        second_done = time.perf_counter()
    out.write_text(
        json.dumps(
            {
                "import_s": imported - began,
                "first_s": first_done - imported,
                "second_s": second_done - first_done,
                "statuses": [first["status"], second["status"]],
                "steps_ms": [{s["name"]: s["ms"] for s in r["steps"]} for r in (first, second)],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
