"""The connectivity check: invoke the deployment's check function and read its report."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from snowsage.aws import error_code
from snowsage.ops.deployment import OperationError
from snowsage.reports import CheckReport
from snowsage.stack_outputs import Deployment


def run_check(dep: Deployment) -> CheckReport:
    fn = str(dep.output("Notebook", "CheckFunctionName"))
    try:
        resp = dep.client("lambda").invoke(FunctionName=fn, InvocationType="RequestResponse", Payload=b"{}")
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise OperationError(
                f"check function {fn} (from {dep.stack_name('Notebook')}) does not exist in {dep.region}; "
                "redeploy the Notebook stack"
            ) from None
        raise
    payload = resp["Payload"].read()
    if resp.get("FunctionError"):
        try:
            err = json.loads(payload)
            detail = f"{err.get('errorType', 'Error')}: {str(err.get('errorMessage', ''))[:300]}"
        except (ValueError, AttributeError):
            detail = "no error details"
        raise OperationError(
            f"check function {fn} crashed ({detail}); see CloudWatch log group /aws/lambda/{fn}"
        )
    try:
        return CheckReport.from_dict(json.loads(payload or b"null"))
    except ValueError:  # not JSON, or a ReportError naming the field
        raise OperationError(
            f"check function {fn} returned something that is not a check report; redeploy the Notebook "
            "stack so the function and this CLI match"
        ) from None
