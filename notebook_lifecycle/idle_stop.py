"""Stop this notebook instance once Jupyter has been idle for the configured minutes.

Run by root's cron every 5 minutes (installed by on_start.sh) with the system python3 (3.9 on
Amazon Linux 2023), so: standard library only, and nothing newer than Python 3.9.

Idle means: no kernel is busy or starting, and the newest activity of any kernel, session or
terminal, or the instance start, is older than the limit. Open browser tabs do not count (an idle
kernel with a tab left open still costs money). When Jupyter cannot be asked, nothing is stopped.
The stop is requested once per start: the state file (reset by on_start.sh) remembers it.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone

BUSY_STATES = ("busy", "starting")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-minutes", type=int, required=True)
    parser.add_argument("--state-file", required=True, help="JSON written by on_start.sh: started_at")
    parser.add_argument("--jupyter-url", default=os.environ.get("JUPYTER_URL", "https://localhost:8443"))
    parser.add_argument("--metadata", default="/opt/ml/metadata/resource-metadata.json")
    parser.add_argument("--aws", default="aws", help="AWS CLI command")
    args = parser.parse_args(argv)
    if args.idle_minutes <= 0:
        log("idle stop disabled (--idle-minutes 0)")
        return 0

    state = read_json(args.state_file) or {}
    if state.get("stop_requested_at"):
        log(f"stop already requested at {state['stop_requested_at']}; waiting for it")
        return 0
    try:
        items = {name: get_json(args.jupyter_url, f"/api/{name}") for name in ("kernels", "sessions")}
    except (OSError, ValueError) as exc:
        log(f"cannot read Jupyter at {args.jupyter_url} ({exc}); not stopping")
        return 0
    try:  # terminals can be switched off in Jupyter; then there are none to count
        items["terminals"] = get_json(args.jupyter_url, "/api/terminals")
    except (OSError, ValueError):
        items["terminals"] = []

    kernels = list(items["kernels"]) + [s.get("kernel") or {} for s in items["sessions"]]
    busy = [k.get("id", "?") for k in kernels if k.get("execution_state") in BUSY_STATES]
    if busy:
        log(f"{len(busy)} kernel(s) busy or starting, e.g. {busy[0]}; not idle")
        return 0

    times = [parse_time(state.get("started_at"))]
    times += [parse_time(k.get("last_activity")) for k in kernels]
    times += [parse_time(t.get("last_activity")) for t in items["terminals"]]
    known = [t for t in times if t is not None]
    if not known:
        log("no activity time known (state file missing and no kernels); not stopping")
        return 0
    idle_minutes = (datetime.now(timezone.utc) - max(known)).total_seconds() / 60
    if idle_minutes < args.idle_minutes:
        log(f"idle for {idle_minutes:.0f} of {args.idle_minutes} minutes")
        return 0

    name = notebook_name(args.metadata)
    if not name:
        log(f"idle for {idle_minutes:.0f} minutes but {args.metadata} names no notebook; not stopping")
        return 1
    log(f"idle for {idle_minutes:.0f} minutes (limit {args.idle_minutes}); stopping notebook instance {name}")
    result = subprocess.run(
        [args.aws, "sagemaker", "stop-notebook-instance", "--notebook-instance-name", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        log(
            f"stop-notebook-instance failed (exit {result.returncode}): {result.stderr.strip()[-500:]}; "
            "the notebook role needs sagemaker:StopNotebookInstance (and, without NAT, a sagemaker.api "
            "VPC endpoint); will retry in 5 minutes"
        )
        return 1
    state["stop_requested_at"] = iso(datetime.now(timezone.utc))
    write_json(args.state_file, state)
    return 0


def get_json(base_url: str, path: str) -> list:
    context = None
    if base_url.startswith("https://"):
        # Jupyter on a notebook instance listens on localhost with a self-signed certificate.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(base_url.rstrip("/") + path, timeout=10, context=context) as resp:  # noqa: S310
        data = json.load(resp)
    if not isinstance(data, list):
        raise ValueError(f"{path} did not return a list")
    return data


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def notebook_name(path: str) -> str:
    data = read_json(path) or {}
    return str(data.get("ResourceName") or "")


def read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} snowsage idle-stop: {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
