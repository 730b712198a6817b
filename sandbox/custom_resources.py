"""CloudFormation's side of custom resources, which moto cannot play without Docker.

sandbox.moto_server writes each custom-resource event to a spool directory; this runner picks it up,
runs the handler and answers the event's ``ResponseURL`` the way the function would. Two kinds exist
in our stacks:

* ``Custom::SnowsageSecureParameter``: the CDK Provider framework (Node.js) in front of our Python
  handler. The runner does what the framework does: it calls the user handler (``on_event``, from
  the synthesized asset in cdk.out, in a Lambda-like subprocess) and answers with its
  ``PhysicalResourceId`` and ``Data``. Our code really creates the SecureString parameters in moto.
* ``Custom::VpcRestrictDefaultSG``: CDK's own Node.js provider. Its code needs the AWS SDK that the
  Lambda runtime provides, which this machine does not have, so the runner makes the same two EC2
  calls (revoke the default security group's all-traffic egress and self-referencing ingress) with
  boto3 and says so in the summary.

moto ignores a FAILED answer (the stack would wait for ever), so a failing handler is reported to the
deploy step, which stops the deployment and names the resource.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snowsage.aws import error_code

from .lambda_runtime import function_asset, invoke

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Handled:
    stack: str
    logical_id: str
    resource_type: str
    how: str


class CustomResourceError(RuntimeError):
    pass


class CustomResourceRunner:
    def __init__(
        self, spool: Path, cdk_out: Path, aws_env: Mapping[str, str], client: Callable[[str], Any]
    ) -> None:
        self.spool = spool
        self.cdk_out = cdk_out
        self.aws_env = dict(aws_env)
        self.client = client
        self.handled: list[Handled] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="custom-resources", daemon=True)

    def __enter__(self) -> CustomResourceRunner:
        self.spool.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        done: set[str] = set()
        while not self._stop.is_set() and self.error is None:
            for path in sorted(self.spool.glob("*.json")):
                if path.name in done:
                    continue
                done.add(path.name)
                event = json.loads(path.read_text())
                try:
                    self.handle(event)
                except Exception as exc:  # noqa: BLE001 - reported by the deploy step, which stops
                    self.error = f"custom resource {event.get('LogicalResourceId')} ({event.get('ResourceType')}): {exc}"
                    return
            self._stop.wait(POLL_SECONDS)

    def handle(self, event: dict[str, Any]) -> None:
        stack = event["StackId"].split("/")[1]
        kind = event["ResourceType"]
        if event["RequestType"] != "Create":
            raise CustomResourceError(f"the sandbox only creates stacks; got a {event['RequestType']} event")
        if kind == "Custom::VpcRestrictDefaultSG":
            self._restrict_default_sg(event["ResourceProperties"])
            physical_id, data = event["LogicalResourceId"], dict[str, Any]()
            how = "CDK's Node.js provider replaced by the same two EC2 calls (boto3)"
        else:
            physical_id, data, how = self._provider_framework(stack, event)

        self._respond(event, physical_id, data)
        self.handled.append(Handled(stack, event["LogicalResourceId"], kind, how))

    def _provider_framework(self, stack: str, event: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        """CDK's Provider framework: find the user's on_event function behind the service token."""
        template = json.loads((self.cdk_out / f"{stack}.template.json").read_text())
        resources = template["Resources"]
        token = resources[event["LogicalResourceId"]]["Properties"]["ServiceToken"]
        framework_id = _get_att_target(token)
        framework_env = resources[framework_id]["Properties"].get("Environment", {}).get("Variables", {})
        user = framework_env.get("USER_ON_EVENT_FUNCTION_ARN")
        if user is None:
            raise CustomResourceError(
                f"service token {framework_id} is not a CDK Provider framework; the sandbox cannot run it"
            )
        fn = function_asset(self.cdk_out, stack, _get_att_target(user))
        if not fn.runtime.startswith("python"):
            raise CustomResourceError(f"{fn.logical_id} runs {fn.runtime}; the sandbox runs Python handlers")
        arn_prefix = event["ServiceToken"].rsplit(":", 1)[0]
        result = invoke(
            fn,
            event,
            function_name=f"{stack}-{fn.logical_id}",
            function_arn=f"{arn_prefix}:{stack}-{fn.logical_id}",
            aws_env=self.aws_env,
            environment=self._deployed_environment(fn.environment, event["ServiceToken"]),
        )
        if not result.ok:
            raise CustomResourceError(f"handler {fn.logical_id} failed: {result.error}\n{result.log[-2000:]}")
        payload = result.payload or {}
        physical_id = str(payload.get("PhysicalResourceId") or event["RequestId"])
        return physical_id, dict(payload.get("Data") or {}), f"our handler {fn.handler} from cdk.out"

    def _deployed_environment(self, template_env: Mapping[str, Any], service_token: str) -> dict[str, str]:
        """The template's variables, except CloudFormation expressions (the secure-parameter handler's
        key ARN), which take the value moto resolved on the deployed user function."""
        if all(isinstance(v, str) for v in template_env.values()):
            return dict(template_env)
        lambda_ = self.client("lambda")

        def variables(function: str) -> dict[str, str]:
            config = lambda_.get_function_configuration(FunctionName=function)
            return dict(config.get("Environment", {}).get("Variables", {}))

        deployed = variables(variables(service_token)["USER_ON_EVENT_FUNCTION_ARN"])
        return {k: v if isinstance(v, str) else deployed[k] for k, v in template_env.items()}

    def _restrict_default_sg(self, props: Mapping[str, Any]) -> None:
        ec2 = self.client("ec2")
        group, account = props["DefaultSecurityGroupId"], props["Account"]
        calls = (
            (ec2.revoke_security_group_egress, {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}),
            (
                ec2.revoke_security_group_ingress,
                {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group, "UserId": account}]},
            ),
        )
        for call, permission in calls:
            try:
                call(GroupId=group, IpPermissions=[permission])
            except ec2.exceptions.ClientError as exc:
                if error_code(exc) != "InvalidPermission.NotFound":
                    raise

    def _respond(self, event: Mapping[str, Any], physical_id: str, data: Mapping[str, Any]) -> None:
        body = {
            "Status": "SUCCESS",
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": dict(data),
        }
        request = urllib.request.Request(  # noqa: S310 - the ResponseURL is our own loopback moto server
            event["ResponseURL"], data=json.dumps(body).encode(), method="PUT", headers={"Content-Type": ""}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            if response.status != 200:
                raise CustomResourceError(f"moto answered {response.status} to the response")


def _get_att_target(value: Any) -> str:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    raise CustomResourceError(f"expected a Fn::GetAtt reference to a function, got {value!r}")
