"""Run a function of the synthesized cloud assembly the way Lambda would, in a subprocess.

The function's handler, environment and code come from ``cdk.out`` (its template and asset
manifest), not from the source tree: what runs is what was deployed. The child process starts in
the asset directory (Lambda's ``/var/task``) with a clean environment: the function's variables,
Lambda's own (``_HANDLER``, ``AWS_LAMBDA_FUNCTION_NAME``, ...) and the sandbox's AWS endpoint and fake
credentials. ``library_path`` goes in front of the asset on ``sys.path``: the sandbox puts this
machine's build of the function's pinned wheels there, because the deployed asset holds arm64 /
Python 3.14 binaries that cannot load here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The child: import the handler from the task root, call it with a Lambda-like context, write the
# result (or the error Lambda would report) to a file. stdout and stderr stay the function's log.
_BOOTSTRAP = """
import importlib, json, os, sys, time, traceback, uuid
sys.path[:] = [p for p in sys.path if p not in ("", ".")]  # PYTHONPATH decides: libraries, then the task
class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = "$LATEST"
    invoked_function_arn = os.environ["SANDBOX_FUNCTION_ARN"]
    memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    aws_request_id = str(uuid.uuid4())
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "sandbox"
    _deadline = time.monotonic() + float(os.environ["SANDBOX_TIMEOUT"])
    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))
event = json.loads(sys.stdin.read() or "{}")
module, _, name = os.environ["_HANDLER"].rpartition(".")
try:
    result = {"ok": True, "payload": getattr(importlib.import_module(module), name)(event, Context())}
except Exception as exc:
    result = {"ok": False, "errorType": type(exc).__name__, "errorMessage": str(exc),
              "stackTrace": traceback.format_exc()}
with open(os.environ["SANDBOX_RESULT_FILE"], "w") as f:
    json.dump(result, f, default=str)
"""


class AssemblyError(RuntimeError):
    """cdk.out does not hold what the sandbox expects (a function, its asset, a stack)."""


@dataclass(frozen=True)
class FunctionAsset:
    stack: str
    logical_id: str
    handler: str
    runtime: str
    architecture: str
    memory_mb: int
    timeout_s: int
    environment: dict[str, Any]
    asset_dir: Path


@dataclass(frozen=True)
class Invocation:
    ok: bool
    payload: Any
    error: str | None
    log: str
    ms: float


def stack_template(cdk_out: Path, stack: str) -> dict[str, Any]:
    path = cdk_out / f"{stack}.template.json"
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise AssemblyError(f"{path} does not exist: was {stack} synthesized into {cdk_out}?") from None


def find_resource(template: Mapping[str, Any], cdk_path_suffix: str) -> str:
    """The logical ID of the resource whose ``aws:cdk:path`` ends with ``cdk_path_suffix``."""
    for logical_id, resource in template.get("Resources", {}).items():
        if str(resource.get("Metadata", {}).get("aws:cdk:path", "")).endswith(cdk_path_suffix):
            return str(logical_id)
    raise AssemblyError(f"no resource at construct path *{cdk_path_suffix} in the template")


def function_asset(cdk_out: Path, stack: str, logical_id: str) -> FunctionAsset:
    template = stack_template(cdk_out, stack)
    resource = template.get("Resources", {}).get(logical_id)
    if not resource or resource.get("Type") != "AWS::Lambda::Function":
        raise AssemblyError(f"{stack} has no AWS::Lambda::Function {logical_id}")
    props = resource["Properties"]
    object_key = str(props.get("Code", {}).get("S3Key", ""))
    asset_hash = object_key.removesuffix(".zip")
    manifest = json.loads((cdk_out / f"{stack}.assets.json").read_text())
    source = manifest.get("files", {}).get(asset_hash, {}).get("source", {})
    if source.get("packaging") != "zip" or not source.get("path"):
        raise AssemblyError(f"{stack}/{logical_id}: asset {object_key!r} is not a directory asset in cdk.out")
    return FunctionAsset(
        stack=stack,
        logical_id=logical_id,
        handler=str(props["Handler"]),
        runtime=str(props.get("Runtime", "")),
        architecture=str((props.get("Architectures") or ["x86_64"])[0]),
        memory_mb=int(props.get("MemorySize", 128)),
        timeout_s=int(props.get("Timeout", 3)),
        environment=dict(props.get("Environment", {}).get("Variables", {})),
        asset_dir=cdk_out / source["path"],
    )


def invoke(
    fn: FunctionAsset,
    event: Any,
    *,
    function_name: str,
    function_arn: str,
    aws_env: Mapping[str, str],
    environment: Mapping[str, str] | None = None,
    library_path: Sequence[Path] = (),
) -> Invocation:
    """Call the handler once; ``environment`` (default: the template's) must be plain strings."""
    variables = dict(fn.environment if environment is None else environment)
    unresolved = [k for k, v in variables.items() if not isinstance(v, str)]
    if unresolved:
        raise AssemblyError(
            f"{fn.stack}/{fn.logical_id}: environment {', '.join(unresolved)} is a CloudFormation "
            "expression, not a value; pass the deployed values"
        )
    with tempfile.TemporaryDirectory(prefix="snowsage-lambda-") as tmp:
        result_file = Path(tmp) / "result.json"
        env = {
            "PATH": os.defpath,
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "HOME": tmp,  # like Lambda's /tmp: the only place the function may write
            **variables,
            **aws_env,
            "_HANDLER": fn.handler,
            "LAMBDA_TASK_ROOT": str(fn.asset_dir),
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "PYTHONPATH": os.pathsep.join([*(str(p) for p in library_path), str(fn.asset_dir)]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "SANDBOX_FUNCTION_ARN": function_arn,
            "SANDBOX_TIMEOUT": str(fn.timeout_s),
            "SANDBOX_RESULT_FILE": str(result_file),
        }
        start = time.monotonic()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _BOOTSTRAP],
                cwd=fn.asset_dir,
                env=env,
                input=json.dumps(event),
                capture_output=True,
                text=True,
                timeout=fn.timeout_s + 30,  # the first import of the connector is slow on a cold disk
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            log = "".join(p if isinstance(p, str) else "" for p in (exc.stdout, exc.stderr))
            return Invocation(False, None, f"timed out after {fn.timeout_s + 30} s", log, exc.timeout * 1000)
        ms = (time.monotonic() - start) * 1000
        log = proc.stdout + proc.stderr
        if not result_file.exists():
            return Invocation(False, None, f"the runtime exited with {proc.returncode}", log, ms)
        result = json.loads(result_file.read_text())
    if result["ok"]:
        return Invocation(True, result["payload"], None, log, ms)
    return Invocation(False, None, f"{result['errorType']}: {result['errorMessage']}", log, ms)
