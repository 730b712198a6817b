"""The SageMaker notebook instance: its state, a presigned URL, start and stop."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from snowsage.ops.deployment import OperationError
from snowsage.stack_outputs import Deployment

Action = Literal["start", "stop"]
# Where each action is already done, and the states it may start from.
_DONE = {"start": ("InService", "Pending", "Updating"), "stop": ("Stopped", "Stopping")}
_FROM = {"start": ("Stopped", "Failed"), "stop": ("InService", "Failed")}
_WAIT_FOR = {"start": "Stopped", "stop": "InService"}


@dataclass(frozen=True)
class NotebookStatus:
    notebook: str
    status: str | None
    instance_type: str | None
    url: str | None
    failure_reason: str | None
    last_modified: datetime | None


@dataclass(frozen=True)
class NotebookUrl:
    notebook: str
    url: str


@dataclass(frozen=True)
class NotebookChange:
    notebook: str
    action: Action
    status: str | None  # before the change
    changed: bool


def _describe(dep: Deployment) -> dict[str, Any]:
    name = dep.output("Notebook", "NotebookName")
    try:
        return dict(dep.client("sagemaker").describe_notebook_instance(NotebookInstanceName=name))
    except ClientError as exc:
        if "RecordNotFound" in str(exc) or "does not exist" in str(exc):
            raise OperationError(
                f"notebook instance {name} (from {dep.stack_name('Notebook')}) does not exist in "
                f"{dep.region}; redeploy the Notebook stack"
            ) from None
        raise


def status(dep: Deployment) -> NotebookStatus:
    nb = _describe(dep)
    return NotebookStatus(
        notebook=nb["NotebookInstanceName"],
        status=nb.get("NotebookInstanceStatus"),
        instance_type=nb.get("InstanceType"),
        url=nb.get("Url"),
        failure_reason=nb.get("FailureReason"),
        last_modified=nb.get("LastModifiedTime"),
    )


def presigned_url(dep: Deployment, session_hours: int) -> NotebookUrl:
    """A login link for a running notebook (valid for 5 minutes, the session for ``session_hours``)."""
    nb = _describe(dep)
    name, state = nb["NotebookInstanceName"], nb.get("NotebookInstanceStatus")
    if state != "InService":
        raise OperationError(
            f"notebook {name} is {state}; run `snowsage notebook start` and wait until it is InService"
        )
    url = dep.client("sagemaker").create_presigned_notebook_instance_url(
        NotebookInstanceName=name, SessionExpirationDurationInSeconds=session_hours * 3600
    )["AuthorizedUrl"]
    return NotebookUrl(name, url)


def change_state(dep: Deployment, action: Action) -> NotebookChange:
    """Start or stop the instance; nothing to do when it is already there or on its way."""
    nb = _describe(dep)
    name, state = nb["NotebookInstanceName"], nb.get("NotebookInstanceStatus")
    if state in _DONE[action]:
        return NotebookChange(name, action, state, changed=False)
    if state not in _FROM[action]:
        raise OperationError(
            f"notebook {name} is {state}; wait until it is {_WAIT_FOR[action]}, then {action} it"
        )
    sm = dep.client("sagemaker")
    (sm.start_notebook_instance if action == "start" else sm.stop_notebook_instance)(
        NotebookInstanceName=name
    )
    return NotebookChange(name, action, state, changed=True)
