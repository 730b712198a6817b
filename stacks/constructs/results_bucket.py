"""The results bucket (notebook Parquet output, backups, the wheelhouse) and its access-log bucket."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from .nag import PolicySink, acknowledge, checkov_skip, via_service

# Python's Bucket.add_lifecycle_rule takes an s3.LifecycleRule's fields as keywords, not the struct.
_LIFECYCLE_RULE_FIELDS = tuple(
    name for name in inspect.signature(s3.Bucket.add_lifecycle_rule).parameters if name != "self"
)


class ResultsBucket(Construct):
    """KMS-encrypted, versioned, TLS-only, private, access-logged; removal follows the config."""

    def __init__(
        self, scope: Construct, id: str, *, bucket_name: str, key: kms.IKey, removal_policy: cdk.RemovalPolicy
    ) -> None:
        super().__init__(scope, id)
        # The name as given, not the bucket's token: grants in other stacks build ARNs from it
        # without a cross-stack import, so their IAM resources stay readable.
        self.bucket_name = bucket_name
        self.key = key
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            # S3 server access logging cannot deliver to a bucket encrypted with a customer key.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=removal_policy,
            auto_delete_objects=False,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireOldAccessLogs",
                    expiration=cdk.Duration.days(365),
                    noncurrent_version_expiration=cdk.Duration.days(30),
                )
            ],
        )
        for rule, reason in (
            ("AwsSolutions-S1", "This is the access-log bucket itself; logging it into itself would loop."),
            (
                "NIST.800.53.R5-S3BucketLoggingEnabled",
                "This is the access-log bucket itself; logging it into itself would loop.",
            ),
            (
                "HIPAA.Security-S3BucketLoggingEnabled",
                "This is the access-log bucket itself; logging it into itself would loop.",
            ),
            (
                "NIST.800.53.R5-S3DefaultEncryptionKMS",
                "S3 server access logging can only deliver to SSE-S3 buckets.",
            ),
            (
                "HIPAA.Security-S3DefaultEncryptionKMS",
                "S3 server access logging can only deliver to SSE-S3 buckets.",
            ),
        ):
            acknowledge(self.access_logs, rule, reason)
        checkov_skip(self.access_logs, "CKV_AWS_18", "This is the access-log bucket itself.")
        self._ack_replication(self.access_logs)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="results/",
            removal_policy=removal_policy,
            auto_delete_objects=False,
            lifecycle_rules=[
                s3.LifecycleRule(id="ExpireOldVersions", noncurrent_version_expiration=cdk.Duration.days(90)),
                s3.LifecycleRule(
                    id="AbortIncompleteUploads", abort_incomplete_multipart_upload_after=cdk.Duration.days(7)
                ),
            ],
        )
        self._ack_replication(self.bucket)

    def add_lifecycle_rule(self, rule: s3.LifecycleRule) -> None:
        """Another unit's rule for its own prefix (the training runs' expiry)."""
        fields = {name: getattr(rule, name) for name in _LIFECYCLE_RULE_FIELDS}
        self.bucket.add_lifecycle_rule(**{k: v for k, v in fields.items() if v is not None})

    @property
    def bucket_arn(self) -> str:
        return f"arn:{cdk.Stack.of(self).partition}:s3:::{self.bucket_name}"

    def objects_arn(self, prefix: str) -> str:
        return f"{self.bucket_arn}/{prefix}*"

    def grant_read_write(self, policy: PolicySink, prefixes: Sequence[str]) -> None:
        """Read, write and list objects under ``prefixes`` only, with the bucket key through S3."""
        policy.add_statements(
            iam.PolicyStatement(
                sid="UseResultsBucketKeyViaS3",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[self.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": via_service("s3", self)}},
            ),
            iam.PolicyStatement(
                # ListBucket takes the bucket, not an object ARN: s3:prefix keeps it to the prefixes.
                sid="ListOwnPrefixes",
                actions=["s3:ListBucket"],
                resources=[self.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in prefixes]}},
            ),
            iam.PolicyStatement(
                # AbortMultipartUpload: upload_fileobj cleans up a large write that failed halfway.
                sid="ReadWriteOwnObjects",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                resources=[self.objects_arn(prefix) for prefix in prefixes],
            ),
        )

    @staticmethod
    def _ack_replication(bucket: s3.Bucket) -> None:
        for pack in ("NIST.800.53.R5", "HIPAA.Security"):
            acknowledge(
                bucket,
                f"{pack}-S3BucketReplicationEnabled",
                "Single-region deployment: versioning and the retain policy protect the data; "
                "cross-region replication is a cost the account owner opts into separately.",
            )
