#!/usr/bin/env python3
"""The smallest CDK app the synth benchmark compares against: one encrypted S3 bucket, no nag packs."""

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3

app = cdk.App()
stack = cdk.Stack(app, "SnowsageBenchMinimal")
s3.Bucket(
    stack,
    "Bucket",
    encryption=s3.BucketEncryption.S3_MANAGED,
    block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
    enforce_ssl=True,
)
app.synth()
