"""The runner's RegisterModel executor: a CreateModelPackage request sent through boto3 (moto in the
sandbox), answered with the package's DescribeModelPackage properties."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ModelRegistry:
    """``ModelRegistry(sagemaker=boto3 SageMaker client)``; botocore checks the request's shape."""

    def __init__(self, *, sagemaker: Any) -> None:
        self.sagemaker = sagemaker

    def __call__(self, *, request: Mapping[str, Any]) -> dict[str, Any]:
        arn = self.sagemaker.create_model_package(**request)["ModelPackageArn"]
        described = self.sagemaker.describe_model_package(ModelPackageName=arn)
        described.pop("ResponseMetadata", None)
        return dict(described)
