"""What an export is asked to do (``ExportSpec``), what it produced (``ExportResult``, ``Manifest``),
its time limit (``TimeBudget``) and its errors.

Everything here is plain data: no AWS or Snowflake call. Identifiers are validated here, once, so
every SQL text built from a spec holds only quoted, checked names.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RUNS_PREFIX = "training/runs/"
SPLITS = ("train", "validation")
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "snowsage.training.manifest/1"
EXPORTERS = ("client", "unload")
MAX_FILES = 128  # client mode keeps one S3 upload buffer per file open (memory ~ files x part size)
MAX_IDENTIFIER = 255

_PLAIN = r"[A-Za-z_][A-Za-z0-9_$]*"
_PLAIN_RE = re.compile(_PLAIN)
_TABLE_RE = re.compile(rf"{_PLAIN}(?:\.{_PLAIN}){{0,2}}")
# A pipeline execution id is the last part of its ARN (lower-case letters and digits); accept the ARN too.
_EXECUTION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,127}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class ExportError(Exception):
    """The export did not happen; the message says why and what to do. Nothing it wrote was kept."""


class ExportInputError(ExportError, ValueError):
    """A setting, column or source cannot be exported as asked; the message names it and the fix."""


class PrefixInUse(ExportError):
    """The run's prefix already holds objects: two runs never share a prefix."""


class ExportTimeLimit(ExportError):
    """The export stopped before the function's time limit would have cut it off."""


def quote(name: str) -> str:
    """A column name exactly as Snowflake reported it, double-quoted (``"`` doubled)."""
    return '"' + name.replace('"', '""') + '"'


def plain_identifier(value: Any, what: str) -> str:
    """A plain Snowflake identifier, upper-cased as Snowflake resolves it (unquoted)."""
    if not isinstance(value, str) or not _PLAIN_RE.fullmatch(value) or len(value) > MAX_IDENTIFIER:
        raise ExportInputError(
            f"{what} is {value!r}, not a plain Snowflake identifier: use letters, digits, _ and $ "
            f"(not starting with a digit, at most {MAX_IDENTIFIER} characters); for any other name, "
            "select it under a plain alias in a query source"
        )
    return value.upper()


def qualified_name(value: Any, what: str) -> str:
    """``name``, ``schema.name`` or ``db.schema.name`` of plain identifiers, each part quoted upper-case."""
    if not isinstance(value, str) or not _TABLE_RE.fullmatch(value):
        raise ExportInputError(
            f"{what} is {value!r}, not a plain Snowflake name: use table, schema.table or db.schema.table, "
            "each part letters, digits, _ and $ (not starting with a digit); for anything else use a "
            "query source"
        )
    parts = value.split(".")
    if any(len(p) > MAX_IDENTIFIER for p in parts):
        raise ExportInputError(f"{what} {value[:40]!r}... has a part longer than {MAX_IDENTIFIER} characters")
    return ".".join(quote(p.upper()) for p in parts)


def execution_id_of(value: Any) -> str:
    """The pipeline execution id, from the id itself or its ARN (``.../execution/<id>``)."""
    is_arn = (
        isinstance(value, str)
        and value.startswith("arn:")
        and ":pipeline/" in value
        and "/execution/" in value
    )
    text = value.rsplit("/", 1)[-1] if is_arn else value
    if not isinstance(text, str) or not _EXECUTION_ID_RE.fullmatch(text):
        raise ExportInputError(
            f"execution_id is {value!r}; pass the pipeline execution id (Execution.PipelineExecutionId): "
            "letters, digits and -, at most 128 characters"
        )
    return text


def sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _int(value: Any, what: str, low: int, high: int, fix: str) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ExportInputError(f"{what} is {value!r}; {fix} (a whole number from {low} to {high})")
    return value


@dataclass(frozen=True)
class ExportSpec:
    """One export: which rows and columns, how they split, where they go.

    Exactly one of ``table`` (``table``, ``schema.table`` or ``db.schema.table``) and ``query`` (one
    SELECT statement, no trailing ``;``). ``features=None`` means every numeric column of the source
    but the label and the id. ``files`` Parquet files per split (at least ``instance_count``, so
    ``ShardedByS3Key`` gives every training host data). ``stage`` (unload only) is the external stage
    whose URL is ``s3://<bucket>/training/runs/`` (see ``integration.unload_setup_sql``).
    """

    execution_id: str
    bucket: str
    label: str
    id_column: str
    table: str | None = None
    query: str | None = None
    features: tuple[str, ...] | None = None
    validation_percent: int = 20
    files: int = 2
    instance_count: int = 1
    kms_key_id: str | None = None
    exporter: str = "client"
    stage: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "execution_id", execution_id_of(self.execution_id))
        if not isinstance(self.bucket, str) or not _BUCKET_RE.fullmatch(self.bucket):
            raise ExportInputError(
                f"bucket is {self.bucket!r}; pass the results bucket's name (not an s3:// URI)"
            )
        set_(self, "label", plain_identifier(self.label, "label column"))
        set_(self, "id_column", plain_identifier(self.id_column, "id column"))
        if (self.table is None) == (self.query is None):
            raise ExportInputError(
                f"the source is table={self.table!r} and query={self.query!r}; set exactly one of them"
            )
        if self.table is not None:
            qualified_name(self.table, "source table")
        else:
            query = self.query.strip().rstrip(";").strip() if isinstance(self.query, str) else ""
            if not query.lower().startswith(("select", "with")):
                raise ExportInputError(
                    f"source query is {self.query!r}; use one SELECT (or WITH ... SELECT) statement"
                )
            set_(self, "query", query)
        if self.features is not None:
            features = tuple(self.features)
            if not features:
                raise ExportInputError(
                    "features is empty; name at least one feature column, or leave it unset for every "
                    "numeric column but the label and the id"
                )
            names = [plain_identifier(f, "feature column") for f in features]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ExportInputError(
                    f"features name {', '.join(dupes)} more than once; name each column once"
                )
            if self.label in names:
                raise ExportInputError(
                    f"features include the label column {self.label}; the label goes in column 0 on its own"
                )
            set_(self, "features", tuple(names))
        set_(
            self,
            "validation_percent",
            _int(self.validation_percent, "validation_percent", 1, 99, "set the share of rows held out"),
        )
        set_(
            self,
            "instance_count",
            _int(self.instance_count, "instance_count", 1, MAX_FILES, "set the number of training instances"),
        )
        set_(self, "files", _int(self.files, "files", 1, MAX_FILES, "set the Parquet files per split"))
        if self.files < self.instance_count:
            raise ExportInputError(
                f"files is {self.files} but instance_count is {self.instance_count}: with ShardedByS3Key a "
                "host without a file gets no data and is billed anyway; set files >= instance_count"
            )
        if self.exporter not in EXPORTERS:
            raise ExportInputError(f"exporter is {self.exporter!r}; use one of {', '.join(EXPORTERS)}")
        if self.exporter == "unload":
            if not self.stage:
                raise ExportInputError(
                    "exporter is unload but no stage is set; set the stage (db.schema.stage) that "
                    "`snowsage train setup-sql` creates"
                )
            qualified_name(self.stage, "stage")
        if self.kms_key_id is not None and not (isinstance(self.kms_key_id, str) and self.kms_key_id.strip()):
            raise ExportInputError(
                f"kms_key_id is {self.kms_key_id!r}; pass the bucket key's ARN or leave it unset"
            )

    # ---------------------------------------------------------------------------------- locations

    @property
    def run_prefix(self) -> str:
        return f"{RUNS_PREFIX}{self.execution_id}/"

    def split_prefix(self, split: str) -> str:
        return f"{self.run_prefix}{split}/"

    @property
    def manifest_key(self) -> str:
        return self.run_prefix + MANIFEST_NAME

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # ------------------------------------------------------------------------------------- source

    @property
    def source_sql(self) -> str:
        """What goes after FROM: the quoted table, or the query as a derived table."""
        if self.table is not None:
            return qualified_name(self.table, "source table")
        return f'({self.query}\n) AS "SNOWSAGE_SOURCE"'  # the newline ends a trailing -- comment

    @property
    def source_query_hash(self) -> str:
        """``sha256:<hex>`` of the source as it is queried (same config, same hash)."""
        return sha256(self.source_sql)

    @property
    def stage_sql(self) -> str:
        return qualified_name(self.stage, "stage")

    # -------------------------------------------------------------------------------------- event

    @classmethod
    def from_event(
        cls,
        event: Mapping[str, Any],
        *,
        defaults: Mapping[str, Any] | None = None,
        default_bucket: str | None = None,
    ) -> ExportSpec:
        """Parse a pipeline Lambda step's arguments over ``defaults`` (the function's static export
        config, see ``EXPORT_CONFIG_ENV_VAR``); the event wins. Strings where the pipeline passes
        strings are fine.

        The pipeline's own names are accepted too: ``run_id`` (= ``execution_id``),
        ``min_train_files`` (= ``instance_count``; ``files`` is raised to it when lower) and
        ``run_prefix`` (checked against the one the id gives). ``features`` may be a list or a comma-separated string ("" = every numeric
        column); an empty ``table``/``query``/``kms_key_id``/``stage`` counts as unset.
        """
        if not isinstance(event, Mapping):
            raise ExportInputError(
                f"the export event is {type(event).__name__}, not the step's arguments object"
            )
        merged: dict[str, Any] = {**(defaults or {})}
        for key, value in event.items():
            merged[EVENT_ALIASES.get(key, key)] = value
        expected_prefix = merged.pop("run_prefix", None)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ExportInputError(
                f"the export step passes unknown argument(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known | set(EVENT_ALIASES) | {'run_prefix'}))}"
            )
        args: dict[str, Any] = {k: v for k, v in merged.items() if v not in (None, "")}
        if default_bucket:
            args.setdefault("bucket", default_bucket)
        missing = [k for k in ("execution_id", "bucket", "label", "id_column") if not args.get(k)]
        if missing:
            raise ExportInputError(
                f"the export has no {', '.join(missing)}: pass them in the step's arguments or the "
                f"function's {EXPORT_CONFIG_ENV_VAR} document"
            )
        features = args.get("features")
        if isinstance(features, str):
            args["features"] = tuple(f.strip() for f in features.split(",") if f.strip()) or None
        elif isinstance(features, Sequence):
            args["features"] = tuple(features)
        if "instance_count" in args:  # a run asking for more instances gets a file for each
            count = _int(
                args["instance_count"], "instance_count", 1, MAX_FILES, "set the number of training instances"
            )
            files = _int(args.get("files", count), "files", 1, MAX_FILES, "set the Parquet files per split")
            args["instance_count"], args["files"] = count, max(files, count)
        spec = cls(**args)
        if expected_prefix is not None and expected_prefix != spec.run_prefix:
            raise ExportInputError(
                f"run_prefix is {expected_prefix!r} but execution {spec.execution_id} exports to "
                f"{spec.run_prefix!r}; the pipeline must pass training/runs/<execution id>/"
            )
        return spec


# The export function's static settings (source, label, id, features, ...): a JSON object of
# ExportSpec fields in this environment variable; the step's arguments add the run's own values.
EXPORT_CONFIG_ENV_VAR = "SNOWSAGE_TRAINING_EXPORT"
EVENT_ALIASES = {"run_id": "execution_id", "min_train_files": "instance_count"}
_STATIC_FIELDS = (
    "table",
    "query",
    "label",
    "id_column",
    "features",
    "validation_percent",
    "files",
    "kms_key_id",
    "exporter",
    "stage",
    "bucket",
)


def export_config(**fields: Any) -> str:
    """The ``EXPORT_CONFIG_ENV_VAR`` document for these static fields, validated now (at synth).

    A bad value raises ``ExportInputError`` naming it; ``bucket`` may be a CDK token (not checked).
    """
    unknown = sorted(set(fields) - set(_STATIC_FIELDS))
    if unknown:
        raise ExportInputError(
            f"export config has unknown field(s) {', '.join(unknown)}; known: {', '.join(_STATIC_FIELDS)}"
        )
    probe = {**fields, "bucket": "snowsage-check", "execution_id": "synth"}
    if isinstance(probe.get("features"), list):
        probe["features"] = tuple(probe["features"])
    files = probe.get("files", 1)
    ExportSpec(**{"instance_count": files if isinstance(files, int) else 1, **probe})
    doc = {k: (list(v) if isinstance(v, tuple) else v) for k, v in fields.items() if v is not None}
    return json.dumps(doc, sort_keys=True)


@dataclass(frozen=True)
class SplitOutput:
    """One split as written: its prefix, and each file's key (relative to the prefix) and rows."""

    split: str
    prefix: str  # object-key prefix in the bucket: training/runs/<id>/<split>/
    files: tuple[tuple[str, int], ...]

    @property
    def rows(self) -> int:
        return sum(rows for _, rows in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "rows": self.rows,
            "files": [{"key": key, "rows": rows} for key, rows in self.files],
        }

    @classmethod
    def from_dict(cls, split: str, data: Mapping[str, Any]) -> SplitOutput:
        return cls(split, str(data["prefix"]), tuple((str(f["key"]), int(f["rows"])) for f in data["files"]))


@dataclass(frozen=True)
class ExportResult:
    """What the export wrote; ``to_dict`` is the Lambda step's output (flat strings and ints).

    ``train_prefix``/``validation_prefix`` are object-key prefixes in ``bucket`` ending in ``/``
    (no ``s3://``), as the pipeline definition joins them into channel URIs.
    """

    exporter: str
    execution_id: str
    bucket: str
    train: SplitOutput
    validation: SplitOutput
    columns: tuple[str, ...]  # label first, then the features, every one FLOAT
    manifest_uri: str
    source_query_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "exporter": self.exporter,
            "execution_id": self.execution_id,
            "bucket": self.bucket,
            "train_prefix": self.train.prefix,
            "validation_prefix": self.validation.prefix,
            "train_rows": self.train.rows,
            "validation_rows": self.validation.rows,
            "train_files": len(self.train.files),
            "validation_files": len(self.validation.files),
            "rows": self.train.rows + self.validation.rows,
            "label": self.columns[0],
            "features": ",".join(self.columns[1:]),
            "feature_count": len(self.columns) - 1,
            "manifest": self.manifest_uri,
            "source_query_hash": self.source_query_hash,
        }


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: written last, so its presence means the run's data is complete."""

    execution_id: str
    exporter: str
    columns: tuple[str, ...]
    validation_percent: int
    source_query_hash: str
    splits: Mapping[str, SplitOutput]
    queries: Mapping[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.splits.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "execution_id": self.execution_id,
            "exporter": self.exporter,
            "rows": self.rows,
            "columns": list(self.columns),
            "label": self.columns[0],
            "validation_percent": self.validation_percent,
            "source_query_hash": self.source_query_hash,
            "splits": {name: s.to_dict() for name, s in self.splits.items()},
            "queries": dict(self.queries),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "manifest") -> Manifest:
        try:
            data = json.loads(text)
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {MANIFEST_FORMAT!r}")
            return cls(
                execution_id=str(data["execution_id"]),
                exporter=str(data["exporter"]),
                columns=tuple(data["columns"]),
                validation_percent=int(data["validation_percent"]),
                source_query_hash=str(data["source_query_hash"]),
                splits={k: SplitOutput.from_dict(k, v) for k, v in data["splits"].items()},
                queries=dict(data.get("queries") or {}),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ExportError(f"{source} is not a snowsage training manifest: {exc!r}") from None

    def result(self, *, bucket: str, manifest_uri: str) -> ExportResult:
        return ExportResult(
            exporter=self.exporter,
            execution_id=self.execution_id,
            bucket=bucket,
            train=self.splits["train"],
            validation=self.splits["validation"],
            columns=self.columns,
            manifest_uri=manifest_uri,
            source_query_hash=self.source_query_hash,
        )


DEFAULT_RESERVE_MS = 30_000
LIMIT_FIX = {
    "client": "set exporter=unload (Snowflake writes the files in parallel), use a larger warehouse, "
    "or narrow the query (fewer rows or columns)",
    "unload": "use a larger warehouse, or narrow the query (fewer rows or columns)",
}


@dataclass(frozen=True)
class TimeBudget:
    """The export function's remaining time; the export stops ``reserve_ms`` before it runs out.

    ``remaining_ms`` is ``context.get_remaining_time_in_millis`` in the Lambda; the reserve pays
    for deleting what was written. ``started_ms`` is what remained when the export began.
    """

    remaining_ms: Callable[[], int]
    reserve_ms: int = DEFAULT_RESERVE_MS
    started_ms: int = 0

    @classmethod
    def from_lambda_context(cls, context: Any, *, reserve_ms: int = DEFAULT_RESERVE_MS) -> TimeBudget:
        get = context.get_remaining_time_in_millis
        return cls(remaining_ms=get, reserve_ms=reserve_ms, started_ms=int(get()))

    @classmethod
    def unlimited(cls) -> TimeBudget:
        return cls(remaining_ms=lambda: 10**12, reserve_ms=0, started_ms=10**12)

    @property
    def limited(self) -> bool:
        return self.started_ms < 10**12

    def usable_ms(self) -> int:
        return int(self.remaining_ms()) - self.reserve_ms

    def statement_timeout_s(self) -> int:
        """STATEMENT_TIMEOUT_IN_SECONDS for the next query: what is left before the reserve (>= 1)."""
        return max(1, self.usable_ms() // 1000)

    def session_parameters(self) -> dict[str, int]:
        """Connection ``session_parameters``: Snowflake cancels any query that would outlast the function."""
        return {"STATEMENT_TIMEOUT_IN_SECONDS": self.statement_timeout_s()} if self.limited else {}

    def check(self, *, exporter: str, done: str) -> None:
        """Raise ``ExportTimeLimit`` when the time before the reserve is used up."""
        if self.usable_ms() > 0:
            return
        raise self.exceeded(exporter=exporter, done=done)

    def exceeded(self, *, exporter: str, done: str) -> ExportTimeLimit:
        return ExportTimeLimit(
            f"the export would outlast the export function's time limit ({self.started_ms // 1000} s "
            f"remained when it started; it stops {self.reserve_ms // 1000} s before the end to clean "
            f"up) and was stopped after {done}; nothing was kept and no manifest was written. "
            f"To fix: {LIMIT_FIX.get(exporter, LIMIT_FIX['client'])}"
        )
