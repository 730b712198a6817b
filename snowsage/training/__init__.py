"""Training data export: Snowflake rows to Parquet under ``s3://<bucket>/training/runs/<execution id>/``.

The interface (everything is keyword arguments and frozen dataclasses):

- ``ExportSpec(execution_id=, bucket=, label=, id_column=, table= | query=, features=None,
  validation_percent=20, files=2, instance_count=1, kms_key_id=None, exporter="client", stage=None)``
  validates every value on construction (``ExportInputError`` naming the value and the fix);
  ``ExportSpec.from_event(event, default_bucket=)`` parses a pipeline Lambda step's arguments.
  ``run_prefix``, ``split_prefix(split)``, ``manifest_key``, ``source_query_hash``.
- ``export(spec, connection=<DB-API connection>, s3=<boto3 S3 client>, budget=TimeBudget | None)``
  -> ``ExportResult``; ``ExportResult.to_dict()`` is the step's output parameters (flat):
  ``train_prefix``, ``validation_prefix`` (``s3://`` URIs), ``train_rows``, ``validation_rows``,
  ``train_files``, ``validation_files``, ``rows``, ``label``, ``features`` (comma-separated),
  ``feature_count``, ``manifest``, ``source_query_hash``, ``exporter``, ``execution_id``.
- ``read_manifest(s3, bucket=, execution_id=)`` -> ``Manifest | None`` (per file key and rows).
- ``TimeBudget.from_lambda_context(context)``: the export stops ``reserve_ms`` before the
  function's end (``ExportTimeLimit``); ``session_parameters()`` gives the connection's
  ``STATEMENT_TIMEOUT_IN_SECONDS``.
- ``integration.source_grants_sql(role=, table=)``, ``integration.unload_setup_sql(integration=,
  role_arn=, bucket=, stage=, kms_key_arn=, role=)`` and ``integration.parse_desc_integration(text)``
  -> ``IntegrationTrust(iam_user_arn, external_id)``.

What an export writes: ``train/`` and ``validation/`` (a deterministic split,
``MOD(ABS(HASH(<id>)), 100) < validation_percent`` is validation), each ``files`` Parquet files
(fewer only when a split has fewer rows), label in column 0 and every column FLOAT (what the
built-in XGBoost reads as ``application/x-parquet``), then ``manifest.json``, last. A failure
deletes what it wrote: no manifest means no usable data. Two exporters:

- ``client`` (default): the SELECT through the connector's Arrow batches, streamed into rotating
  multipart uploads (memory: one batch plus one S3 part per file, see ``writer``).
- ``unload``: ``COPY INTO @<stage>/<id>/<split>/ FROM (SELECT ...) PARTITION BY (<hash bucket>)``,
  Snowflake writing the files itself; the stage's URL is ``s3://<bucket>/training/runs/``, the
  integration's only allowed location, so the files land at the same keys as in client mode
  (under ``bucket=<n>/`` folders). Counts come from ``DETAILED_OUTPUT``.
"""

from snowsage.training.export import check_prefix_free, discard, export, read_manifest, write_split
from snowsage.training.spec import (
    ExportError,
    ExportInputError,
    ExportResult,
    ExportSpec,
    ExportTimeLimit,
    Manifest,
    PrefixInUse,
    SplitOutput,
    TimeBudget,
)

__all__ = [
    "ExportError",
    "ExportInputError",
    "ExportResult",
    "ExportSpec",
    "ExportTimeLimit",
    "Manifest",
    "PrefixInUse",
    "SplitOutput",
    "TimeBudget",
    "check_prefix_free",
    "discard",
    "export",
    "read_manifest",
    "write_split",
]
