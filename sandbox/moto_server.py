"""moto's server for the sandbox: ``python -m sandbox.moto_server -p PORT``.

Plain ``python -m moto.server`` plus narrow fixes for moto 5.2.5 defects that stop a real CDK
deployment; each names the defect, and none changes what a correct template or API call gets back:

* ``AWS::KMS::Key`` with ``Tags``: CloudFormation tags are ``Key``/``Value`` but moto hands them to
  the KMS API model, which wants ``TagKey``/``TagValue``. The KeyError surfaces as the misleading
  "Fn::GetAtt references undefined resource EncryptionKey...". Every CDK stack with a tag has it.
* ``AWS::SSM::Parameter`` with ``Tags``: CloudFormation gives a map, moto iterates it as a list of
  ``{"Key": ..., "Value": ...}`` and fails with a 500, which the CLI's retry turns into "stack
  already exists".
* ``AWS::EC2::EIP``: moto knows only ``AllocationId``, so ``Fn::GetAtt EIP.PublicIp`` (the
  NatElasticIps output) fails validation; the address it allocated is returned.
* ``AWS::SageMaker::NotebookInstance`` and ``...NotebookInstanceLifecycleConfig``: moto ignores the
  name properties (so ``snowsage notebook status`` would not find ``snowsage-<env>``) and drops every
  notebook property but the instance type and role; the name, subnet, security groups, KMS key,
  lifecycle configuration, volume, direct-internet and root access are passed through.

And one stand-in for what moto cannot do without Docker: run the Lambda behind a custom resource.
moto's CloudFormation invokes it in a container; with no Docker the invocation fails, nobody answers,
and the stack stays CREATE_IN_PROGRESS for ever (a change set would instead report CREATE_COMPLETE
without running it). With ``--custom-resource-spool DIR`` the server writes each custom-resource
event (properties already resolved, ``ResponseURL`` pointing back at this server) to
``DIR/<request id>.json`` instead, exactly what CloudFormation would send the function; the sandbox
runs the handler and answers the URL (see sandbox/custom_resources.py). The stack completes only
when every custom resource has answered SUCCESS, as on AWS.

And one for what moto does not do at all: run a SageMaker pipeline. moto marks an execution
Succeeded the moment it starts and has no ListPipelineExecutionSteps. With ``--pipeline-spool DIR``
(by default ``<custom-resource-spool>/pipelines``) StartPipelineExecution leaves the execution
Executing and writes it (its ARN, parameters and the pipeline's definition) to ``DIR/<id>.json``;
the sandbox runs its steps on this machine (sandbox/training_demo.py ``PipelineRunner``) and posts
each change to ``REPORT_PATH`` on this server: the step records, the training job's description
(FinalMetricDataList, ModelArtifacts) and the execution's status. DescribePipelineExecution,
ListPipelineExecutionSteps and DescribeTrainingJob then answer from those reports as SageMaker
would. Without the spool, executions behave as in plain moto.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Where the sandbox's pipeline runner reports an execution's progress (POST, JSON; see above).
REPORT_PATH = "/moto-api/sandbox/pipeline-execution"
EXECUTION_FIELDS = ("PipelineExecutionArn", "Status", "Steps")  # what every report carries


def _reshape_cfn_tags(model: Any, reshape: Callable[[Any], Any]) -> None:
    """Rewrite ``Properties.Tags`` before ``model`` creates its resource from a template."""
    original = model.create_from_cloudformation_json.__func__

    def create(cls: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any) -> Any:
        props = cloudformation_json.get("Properties", {})
        if props.get("Tags"):
            props["Tags"] = reshape(props["Tags"])
        return original(cls, resource_name, cloudformation_json, *args, **kwargs)

    model.create_from_cloudformation_json = classmethod(create)


def _add_cfn_attribute(model: Any, name: str, getter: Callable[[Any], Any]) -> None:
    has_attr = model.has_cfn_attr.__func__
    get_attr = model.get_cfn_attribute

    def has(cls: Any, attr: str) -> bool:
        return attr == name or bool(has_attr(cls, attr))

    def get(self: Any, attr: str) -> Any:
        return getter(self) if attr == name else get_attr(self, attr)

    model.has_cfn_attr = classmethod(has)
    model.get_cfn_attribute = get


def _sagemaker_notebooks() -> None:
    from moto.sagemaker import models

    sagemaker_backends = models.sagemaker_backends
    notebook_model: Any = models.FakeSagemakerNotebookInstance
    config_model: Any = models.FakeSageMakerNotebookInstanceLifecycleConfig
    config_create = config_model.create_from_cloudformation_json.__func__

    def create_config(
        cls: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any
    ) -> Any:
        name = cloudformation_json["Properties"].get("NotebookInstanceLifecycleConfigName") or resource_name
        return config_create(cls, name, cloudformation_json, *args, **kwargs)

    def create_notebook(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        props = cloudformation_json["Properties"]
        return sagemaker_backends[account_id][region_name].create_notebook_instance(
            notebook_instance_name=props.get("NotebookInstanceName") or resource_name,
            instance_type=props["InstanceType"],
            role_arn=props["RoleArn"],
            subnet_id=props.get("SubnetId"),
            security_group_ids=props.get("SecurityGroupIds"),
            kms_key_id=props.get("KmsKeyId"),
            lifecycle_config_name=props.get("LifecycleConfigName"),
            direct_internet_access=props.get("DirectInternetAccess", "Enabled"),
            volume_size_in_gb=int(props.get("VolumeSizeInGB", 5)),
            root_access=props.get("RootAccess"),
        )

    config_model.create_from_cloudformation_json = classmethod(create_config)
    notebook_model.create_from_cloudformation_json = classmethod(create_notebook)


def spool_custom_resources(spool: Path, server_url: str) -> None:
    """Write custom-resource events to ``spool`` instead of invoking their function in Docker.

    Events are written once the stack's create loop has finished: an answer that arrived earlier
    would make moto's readiness check create the remaining resources on the answering thread too.
    """
    from moto.cloudformation import cloudformation_backends, custom_model, models

    custom_resource: Any = custom_model.CustomModel  # abstract for mypy, concrete at run time
    stack_model: Any = models.Stack
    from moto.moto_api._internal import mock_random

    spool.mkdir(parents=True, exist_ok=True)
    pending: dict[str, list[dict[str, Any]]] = {}

    def write(event: dict[str, Any]) -> None:
        tmp = spool / f".{event['RequestId']}.tmp"
        tmp.write_text(json.dumps(event, default=str))
        tmp.rename(spool / f"{event['RequestId']}.json")

    def create(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        properties = cloudformation_json["Properties"]
        request_id = str(mock_random.uuid4())
        resource = custom_resource(region_name, request_id, kwargs["LogicalId"], resource_name)
        stack_id = kwargs["StackId"]
        cloudformation_backends[account_id][region_name].get_stack(stack_id).add_custom_resource(resource)
        event = {
            "RequestType": "Create",
            "ServiceToken": properties["ServiceToken"],
            "ResponseURL": f"{server_url}/cloudformation_{region_name}/cfnresponse?stack={stack_id}",
            "StackId": stack_id,
            "RequestId": request_id,
            "LogicalResourceId": kwargs["LogicalId"],
            "ResourceType": kwargs["ResourceType"],
            "ResourceProperties": properties,
        }
        if stack_id in pending:
            pending[stack_id].append(event)
        else:
            write(event)
        return resource

    create_resources = stack_model.create_resources

    def create_then_spool(self: Any) -> None:
        pending[self.stack_id] = []
        try:
            create_resources(self)
        finally:
            for event in pending.pop(self.stack_id):
                write(event)

    custom_resource.create_from_cloudformation_json = classmethod(create)
    stack_model.create_resources = create_then_spool


def _time(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _backend_of(arn: str) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    _, _, _, region, account, _ = arn.split(":", 5)
    return sagemaker_backends[account][region]


def spool_pipeline_executions(spool: Path, server_url: str) -> None:
    """Leave each started execution Executing, spool it, and answer for it from the runner's reports."""
    from moto.core.responses import ActionResult
    from moto.sagemaker import models, responses
    from moto.sagemaker.utils import get_pipeline_execution_from_arn

    backend: Any = models.SageMakerModelBackend
    response: Any = responses.SageMakerResponse
    spool.mkdir(parents=True, exist_ok=True)
    steps: dict[str, list[dict[str, Any]]] = {}
    failure: dict[str, str] = {}
    lock = threading.Lock()
    start, describe = backend.start_pipeline_execution, backend.describe_pipeline_execution

    def start_execution(self: Any, pipeline_name: str, *args: Any, **kwargs: Any) -> dict[str, str]:
        started = start(self, pipeline_name, *args, **kwargs)
        arn = started["PipelineExecutionArn"]
        execution = get_pipeline_execution_from_arn(self.pipelines, arn)
        execution.pipeline_execution_status = "Executing"
        event = {
            "PipelineExecutionArn": arn,
            "PipelineName": pipeline_name,
            "PipelineParameters": execution.pipeline_parameters or [],
            "PipelineDefinition": execution.pipeline_definition_for_execution,
            "ReportURL": f"{server_url}{REPORT_PATH}",
        }
        name = arn.rsplit("/", 1)[-1]
        tmp = spool / f".{name}.tmp"
        tmp.write_text(json.dumps(event, default=str))
        tmp.rename(spool / f"{name}.json")
        return started

    def describe_execution(self: Any, pipeline_execution_arn: str) -> dict[str, Any]:
        found = describe(self, pipeline_execution_arn)
        found["FailureReason"] = failure.get(pipeline_execution_arn, "")
        return found

    def list_steps(self: Any) -> ActionResult:
        arn = self._get_param("PipelineExecutionArn")
        get_pipeline_execution_from_arn(self.sagemaker_backend.pipelines, arn)  # a ValidationError if none
        with lock:
            found = [dict(s) for s in steps.get(arn, [])]
        # SageMaker lists the newest step first unless asked otherwise.
        found.sort(key=lambda s: s["StartTime"], reverse=self._get_param("SortOrder") != "Ascending")
        return ActionResult({"PipelineExecutionSteps": found})

    def report(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.get_data() or b"{}")
        missing = [k for k in EXECUTION_FIELDS if k not in body]
        if missing:
            return 400, {}, json.dumps({"error": f"report without {', '.join(missing)}"})
        arn = body["PipelineExecutionArn"]
        sagemaker = _backend_of(arn)
        execution = get_pipeline_execution_from_arn(sagemaker.pipelines, arn)
        for job in body.get("TrainingJobs", []):
            _record_training_job(sagemaker, job)
        with lock:
            steps[arn] = [
                {k: _time(v) if k in ("StartTime", "EndTime") else v for k, v in s.items()}
                for s in body["Steps"]
            ]
            if body.get("FailureReason"):
                failure[arn] = str(body["FailureReason"])
            execution.pipeline_execution_status = body["Status"]
            execution.pipeline_execution_failure_reason = body.get("FailureReason") or None
            execution.last_modified_time = datetime.now(timezone.utc)
        return 200, {"Content-Type": "application/json"}, json.dumps({"ok": True})

    from moto.moto_api._internal import urls

    urls.url_paths["{0}" + REPORT_PATH + "$"] = report
    backend.start_pipeline_execution = start_execution
    backend.describe_pipeline_execution = describe_execution
    response.list_pipeline_execution_steps = list_steps


def _record_training_job(sagemaker: Any, job: Mapping[str, Any]) -> None:
    """A pipeline's training job as DescribeTrainingJob shows it: created from its request (moto's
    model), then what the job ended with (status, metrics, model) in place of moto's made-up values."""
    name = job["TrainingJobName"]
    if name not in sagemaker.training_jobs:
        sagemaker.create_training_job(
            training_job_name=name,
            hyper_parameters=job.get("HyperParameters", {}),
            algorithm_specification=dict(job.get("AlgorithmSpecification", {})),
            role_arn=job.get("RoleArn", ""),
            input_data_config=job.get("InputDataConfig", []),
            output_data_config=job.get("OutputDataConfig", {"S3OutputPath": ""}),
            resource_config=job.get("ResourceConfig", {}),
            vpc_config=job.get("VpcConfig"),
            stopping_condition=job.get("StoppingCondition", {}),
            tags=job.get("Tags", []),
            enable_network_isolation=job.get("EnableNetworkIsolation", False),
            enable_inter_container_traffic_encryption=job.get("EnableInterContainerTrafficEncryption", False),
            enable_managed_spot_training=job.get("EnableManagedSpotTraining", False),
            checkpoint_config=job.get("CheckpointConfig"),
            debug_hook_config=None,
            debug_rule_configurations=None,
            tensor_board_output_config=None,
            experiment_config=None,
        )
    fake = sagemaker.training_jobs[name]
    fake.algorithm_specification = dict(job.get("AlgorithmSpecification", {}))  # not moto's test:dcg
    fake.training_job_status = job.get("TrainingJobStatus", "InProgress")
    fake.secondary_status = job.get("SecondaryStatus", fake.training_job_status)
    fake.failure_reason = job.get("FailureReason")
    fake.model_artifacts = job.get("ModelArtifacts", fake.model_artifacts)
    fake.final_metric_data_list = [
        {**m, "Timestamp": _time(m.get("Timestamp"))} for m in job.get("FinalMetricDataList", [])
    ]
    for attr, key in (("training_start_time", "TrainingStartTime"), ("training_end_time", "TrainingEndTime")):
        if job.get(key):
            setattr(fake, attr, _time(job[key]))
    fake.last_modified_time = datetime.now(timezone.utc)


def apply_fixes() -> None:
    from moto.ec2.models.elastic_ip_addresses import ElasticAddress
    from moto.kms.models import Key
    from moto.ssm.models import Parameter

    _add_cfn_attribute(ElasticAddress, "PublicIp", lambda eip: eip.public_ip)
    _sagemaker_notebooks()

    _reshape_cfn_tags(
        Key, lambda tags: [{"TagKey": t["Key"], "TagValue": t["Value"]} if "Key" in t else t for t in tags]
    )
    _reshape_cfn_tags(
        Parameter,
        lambda tags: [{"Key": k, "Value": v} for k, v in tags.items()] if isinstance(tags, dict) else tags,
    )


def main(argv: list[str] | None = None) -> None:
    from moto.server import main as moto_main

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--custom-resource-spool", type=Path)
    parser.add_argument("--pipeline-spool", type=Path)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    ours, rest = parser.parse_known_args(argv if argv is not None else sys.argv[1:])
    apply_fixes()
    if ours.custom_resource_spool:
        spool_custom_resources(ours.custom_resource_spool, f"http://{ours.host}:{ours.port}")
    pipelines = ours.pipeline_spool or (
        ours.custom_resource_spool / "pipelines" if ours.custom_resource_spool else None
    )
    if pipelines:
        spool_pipeline_executions(pipelines, f"http://{ours.host}:{ours.port}")
    moto_main(["-H", ours.host, "-p", str(ours.port), *rest])


if __name__ == "__main__":
    main()
