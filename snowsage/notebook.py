"""Snowflake from a notebook in three lines: ``connect``, ``query`` into pandas, Parquet in S3.

Settings come from the file the lifecycle script writes, credentials from SSM through
``snowsage.credentials``; one connection is kept per process and reopened when closed. Every error a
user can hit is a ``NotebookError`` whose message says what is wrong and what to do; none carries a
secret. Importing this module is cheap: the connector, pandas, pyarrow and boto3 load on first use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import numbers
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snowsage.reports import InstallStatus
from snowsage.settings import NOTEBOOK_SETTINGS_PATH, RuntimeSettings, SettingsError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ConfigurationError",
    "ConnectFailed",
    "CredentialsNotReady",
    "InstallFailed",
    "InstallNotFinished",
    "InvalidArgument",
    "NotebookError",
    "ResultsError",
    "SettingsNotFound",
    "close",
    "connect",
    "query",
    "query_batches",
    "read_s3",
    "sample",
    "to_s3",
]

SETTINGS_FILE_ENV_VAR = "SNOWSAGE_SETTINGS_FILE"
INSTALL_STATUS_NAME = "install-status.json"  # written by on_start.sh next to settings.json
INSTALL_LOG = "/opt/snowsage/install.log"  # on_start.sh's INSTALL_LOG (pip output)
# The Jupyter kernel on_start.sh registers (and the example notebooks name) for the env that
# install_wheels.sh builds in envs/<key> next to settings.json; conda_python3 has none of it.
KERNEL_NAME = "snowsage"
KERNEL_DISPLAY_NAME = "Python 3 (Snowflake)"
KERNEL_ENVS_NAME = "envs"
RESULTS_PREFIX = "results/"
MAX_SEED = 2_147_483_647  # Snowflake's SEED range is 0..2^31-1
MAX_IDENTIFIER = 255
MAX_RESULT_NAME = 200
# Session or master token expired after a long idle: reconnecting (once) is all it takes.
SESSION_EXPIRED_CODES = frozenset({390111, 390112, 390114})

Params = Sequence[Any] | Mapping[str, Any] | None


class NotebookError(Exception):
    """Something the notebook user can fix; the message says what and how."""


class SettingsNotFound(NotebookError):
    """The settings file is missing or unreadable."""


class InstallNotFinished(NotebookError):
    """The lifecycle script is still installing the connector and snowsage into this env."""


class InstallFailed(NotebookError):
    """The lifecycle script's install failed (or this kernel lacks the packages)."""


class CredentialsNotReady(NotebookError):
    """The operator has not stored the Snowflake credentials yet."""


class ConfigurationError(NotebookError):
    """The deployment's parameters cannot be read or hold unusable values."""


class ConnectFailed(NotebookError):
    """Snowflake refused the sign-in or could not be reached."""


class InvalidArgument(NotebookError, ValueError):
    """An argument (table name, percent, seed, result name, data frame) is not acceptable."""


class ResultsError(NotebookError):
    """The results bucket is not configured, not reachable, or has no such result."""


# --------------------------------------------------------------------------------- settings, install


def settings_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The settings file: ``path``, else $SNOWSAGE_SETTINGS_FILE, else the notebook instance's."""
    if path is not None:
        return Path(path)
    # STYLE keeps os.environ to entry points; a notebook kernel is one, and it has no other way to
    # be pointed at the sandbox's settings file. Only this path is read, nothing else.
    return Path(os.environ.get(SETTINGS_FILE_ENV_VAR) or NOTEBOOK_SETTINGS_PATH)


def _install_status(path: Path) -> InstallStatus | None:
    """What the lifecycle's install reported; None if nothing readable (a foreign file says nothing)."""
    try:
        return InstallStatus.from_dict(
            json.loads((path.parent / INSTALL_STATUS_NAME).read_text(encoding="utf-8"))
        )
    except (OSError, ValueError):  # unreadable, not JSON, or not an install status (ReportError)
        return None


def _still_installing(path: Path, status: InstallStatus) -> InstallNotFinished:
    started = f"started {status.started_at}: " if status.started_at else ""
    detail = (status.detail or "in progress").strip()
    return InstallNotFinished(
        f"the notebook is still installing the Snowflake connector ({started}{detail}): wait a minute "
        f"and re-run this cell{_kernel_hint(path)}; if {path.parent / INSTALL_STATUS_NAME} still says "
        f"running after 15 minutes, see {INSTALL_LOG} and stop and start the notebook instance, which "
        f"builds the {KERNEL_DISPLAY_NAME!r} kernel's environment again"
    )


def _in_kernel_env(path: Path) -> bool:
    """Whether this process runs in one of the kernel envs install_wheels.sh builds beside ``path``."""
    import sys

    envs = os.path.realpath(path.parent / KERNEL_ENVS_NAME)
    return os.path.realpath(sys.prefix).startswith(envs + os.sep)


def _kernel_hint(path: Path) -> str:
    """In another kernel: which one to pick instead (empty in the snowsage kernel)."""
    import sys

    if _in_kernel_env(path):
        return ""
    return (
        f" in the {KERNEL_DISPLAY_NAME!r} kernel (Kernel > Change kernel > {KERNEL_DISPLAY_NAME}; this "
        f"kernel runs {sys.prefix}, which the lifecycle never installs into)"
    )


def _install_error(path: Path, module: str) -> NotebookError:
    """Why ``module`` cannot be imported: the install is running, it failed, or this is another kernel."""
    status = _install_status(path)
    if status and status.running:
        return _still_installing(path, status)
    if status and status.failed:
        detail = (status.detail or "no reason recorded").strip()
        return InstallFailed(
            f"installing the Snowflake connector failed: {detail}. Full log: {INSTALL_LOG} (and "
            "CloudWatch /aws/sagemaker/NotebookInstances, stream <notebook>/jupyter.log); fix the "
            "cause, then stop and start the notebook instance to retry"
        )
    if _in_kernel_env(path):
        return InstallFailed(
            f"the {KERNEL_DISPLAY_NAME!r} kernel cannot import {module} although its install did not "
            f"fail: its environment is incomplete; stop and start the notebook instance, which rebuilds "
            f"it (progress in {path.parent / INSTALL_STATUS_NAME}, log in {INSTALL_LOG})"
        )
    return InstallFailed(
        f"this kernel cannot import {module}: run this notebook{_kernel_hint(path)}, where the "
        "lifecycle installs the connector and snowsage, then run it again from the first cell"
    )


def _check_install(path: Path) -> None:
    """Refuse to start while pip may still be replacing packages under this kernel."""
    status = _install_status(path)
    if status and status.running:
        raise _still_installing(path, status)


def _import(module: str, path: Path) -> Any:
    """Import a heavy dependency; when it is missing, say why (install running/failed, wrong kernel)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        error = _install_error(path, module)
    raise error from None


def load_settings(path: str | os.PathLike[str] | None = None) -> RuntimeSettings:
    """The deployment's RuntimeSettings from the settings file (see ``settings_path``)."""
    p = settings_path(path)
    try:
        settings = RuntimeSettings.from_file(p)
    except SettingsError as exc:
        raise SettingsNotFound(str(exc)) from None
    except OSError as exc:
        raise SettingsNotFound(
            f"settings file {p} cannot be read ({exc.strerror}); restart the notebook instance so its "
            "lifecycle script rewrites it"
        ) from None
    _check_install(p)
    return settings


# --------------------------------------------------------------------------------------- connection

_lock = threading.RLock()
# conn/pid: the open connection and the process that opened it; path: the settings file chosen by
# the last connect() (None: $SNOWSAGE_SETTINGS_FILE or the instance's), used by every helper.
_state: dict[str, Any] = {"conn": None, "pid": None, "path": None}


def _is_open(conn: Any) -> bool:
    try:
        return not conn.is_closed()
    except Exception:  # noqa: BLE001 - a connection that cannot even answer this is not usable
        return False


def connect(settings_file: str | os.PathLike[str] | None = None) -> Any:
    """The process's Snowflake connection, opened on first use and reopened when closed.

    ``settings_file`` defaults to the file of the previous ``connect``, then $SNOWSAGE_SETTINGS_FILE,
    then the notebook instance's file; the other helpers use the same file.
    """
    with _lock:
        path = settings_path(settings_file if settings_file is not None else _state["path"])
        conn, mine = _state["conn"], _state["pid"] == os.getpid()
        if conn is not None and mine and _state["path"] == path and _is_open(conn):
            return conn
        _state.update(conn=None, pid=None, path=path)
        # A forked child must not reuse (or close) its parent's session: it opens its own.
        if conn is not None and mine:
            _close_quietly(conn)
        conn = _open(path)
        _state.update(conn=conn, pid=os.getpid())
        return conn


def close() -> None:
    """Close the cached connection; the next helper call opens a new one (same settings file)."""
    with _lock:
        conn, mine = _state["conn"], _state["pid"] == os.getpid()
        _state.update(conn=None, pid=None)
    if conn is not None and mine:
        _close_quietly(conn)


def _close_quietly(conn: Any) -> None:
    # Closing a dead session must not hide the problem the caller is about to report.
    with contextlib.suppress(Exception):
        conn.close()


def _open(path: Path) -> Any:
    from snowsage import credentials

    settings = load_settings(path)
    connector = _import("snowflake.connector", path)
    boto3 = _import("boto3", path)
    aws_errors = _import("botocore.exceptions", path)
    from snowsage import aws  # imports botocore: only once the install check above has passed

    try:
        # botocore logs GetParameters' decrypted response at DEBUG: a cell with DEBUG logging on
        # would print the private key into the notebook file and its S3 backup.
        with aws.sdk_loggers_quiet():
            ssm = boto3.client("ssm", region_name=settings.region)  # honours AWS_ENDPOINT_URL (sandbox)
            cfg = credentials.load_connection(settings, credentials.boto3_fetcher(ssm))
    except credentials.CredentialsNotSet as exc:
        raise CredentialsNotReady(
            f"{exc}. Run it where you operate the deployment (with --env {settings.env_name}), then "
            "re-run this cell"
        ) from None
    except credentials.CredentialsError as exc:
        raise ConfigurationError(str(exc)) from None
    except (aws_errors.BotoCoreError, aws_errors.ClientError) as exc:
        raise ConfigurationError(_ssm_error_message(settings, exc)) from None
    try:
        return connector.connect(**cfg.connect_kwargs())
    except connector.errors.Error as exc:
        from snowsage.diagnostics import explain_snowflake_error

        raise ConnectFailed(explain_snowflake_error(exc.errno, exc.msg or str(exc), cfg)) from None


def _ssm_error_message(settings: RuntimeSettings, exc: BaseException) -> str:
    from snowsage import aws

    failed = (
        f"reading the Snowflake parameters for env {settings.env_name!r} from SSM in {settings.region} "
        f"failed ({_aws_error(exc)})"
    )
    if aws.is_throttling(exc):
        return (
            f"{failed}: SSM is throttling this account's requests (too many at once, even after "
            "retries); wait a minute and re-run this cell, and if many kernels or jobs connect at the "
            "same moment, start fewer at once: one connect() per kernel is reused by every query"
        )
    if aws.is_bad_credentials(exc):
        return (
            f"{failed}: AWS rejected this kernel's credentials. The notebook role's own credentials "
            "renew themselves, so this means credentials set in the kernel (AWS_* environment "
            "variables, a profile or an assumed-role session) expired: refresh them, or remove them "
            "and restart the kernel (Kernel > Restart) to use the notebook role again"
        )
    return (
        f"{failed}: the notebook role needs ssm:GetParameters on them and kms:Decrypt on their key, "
        "and the subnet a route to SSM; redeploy the stacks"
    )


def _aws_error(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', '')}".strip(": ")
    return f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------------------------ queries


def _execute(sql: str, params: Params) -> Any:
    """A cursor that ran ``sql``; an expired session is reopened once (nothing ran on it)."""
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidArgument(f"sql is {sql!r}; pass one SQL statement, e.g. query('select current_date()')")
    conn = connect()
    try:
        return conn.cursor().execute(sql, params)
    except Exception as exc:
        if getattr(exc, "errno", None) not in SESSION_EXPIRED_CODES:
            raise
    close()
    return connect().cursor().execute(sql, params)


def _empty_frame(cur: Any) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=[d.name for d in (cur.description or ())])


def _fetch_all(cur: Any) -> pd.DataFrame:
    from snowflake.connector.errors import NotSupportedError

    try:
        df = cur.fetch_pandas_all()
    except NotSupportedError:  # a JSON result (some SHOW/DESC commands): no Arrow to convert
        import pandas as pd

        return pd.DataFrame.from_records(cur.fetchall(), columns=[d.name for d in cur.description or ()])
    if df is None or (len(df.columns) == 0 and cur.description):
        return _empty_frame(cur)
    return df


def query(sql: str, params: Params = None) -> pd.DataFrame:
    """Run ``sql`` and return the result as a DataFrame (through Arrow).

    Pass values as ``params`` (``%s`` / ``%(name)s`` placeholders), never by formatting them into
    ``sql``; a table name goes in as ``identifier(%s)``. An empty result keeps its columns.
    """
    _import("pandas", settings_path(_state["path"]))
    cur = _execute(sql, params)
    try:
        return _fetch_all(cur)
    finally:
        cur.close()


def query_batches(sql: str, params: Params = None) -> Iterator[pd.DataFrame]:
    """Run ``sql`` now and yield its result as DataFrames, one per result chunk (for large results).

    An empty result yields one empty DataFrame with the columns.
    """
    _import("pandas", settings_path(_state["path"]))
    cur = _execute(sql, params)
    return _batches(cur)


def _batches(cur: Any) -> Iterator[pd.DataFrame]:
    from snowflake.connector.errors import NotSupportedError

    try:
        try:
            frames = cur.fetch_pandas_batches()
        except NotSupportedError:
            yield _fetch_all(cur)
            return
        seen = False
        for frame in frames:
            seen = True
            yield frame
        if not seen:
            yield _empty_frame(cur)
    finally:
        cur.close()


# ------------------------------------------------------------------------------------- identifiers

_PLAIN = r"[A-Za-z_][A-Za-z0-9_$]*"
_QUOTED = r'"(?:[^"\x00-\x1f]|"")+"'
_PART = re.compile(rf"{_PLAIN}|{_QUOTED}")
_TABLE = re.compile(rf"(?:{_PLAIN}|{_QUOTED})(?:\.(?:{_PLAIN}|{_QUOTED})){{0,2}}")


def quote_table(name: str) -> str:
    """``table``, ``schema.table`` or ``db.schema.table`` with every part double-quoted.

    A plain part (``[A-Za-z_][A-Za-z0-9_$]*``) is upper-cased, which is how Snowflake resolves an
    unquoted name; a quoted part (``"My ""x"" table"``) is kept exactly. Anything else is refused.
    """
    if not isinstance(name, str) or not _TABLE.fullmatch(name):
        raise InvalidArgument(
            f"table name {name!r} is not a valid Snowflake table name: use table, schema.table or "
            'db.schema.table, each part letters/digits/_/$ (not starting with a digit) or "double '
            'quoted" with "" for a quote inside'
        )
    parts = _PART.findall(name)
    if any(len(p[1:-1].replace('""', '"') if p.startswith('"') else p) > MAX_IDENTIFIER for p in parts):
        raise InvalidArgument(
            f"table name {name[:40]!r}... has a part longer than {MAX_IDENTIFIER} characters"
        )
    return ".".join(p if p.startswith('"') else '"' + p.upper() + '"' for p in parts)


def _percent_literal(percent: Any) -> str:
    ok = isinstance(percent, numbers.Real) and not isinstance(percent, bool)
    if ok:
        ok = math.isfinite(float(percent)) and 0 < float(percent) <= 100
    if not ok:
        raise InvalidArgument(f"percent is {percent!r}; use a number above 0 and at most 100 (10 = 10 %)")
    text = format(Decimal(repr(float(percent))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _seed_literal(seed: Any) -> str:
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= int(seed) <= MAX_SEED:
        raise InvalidArgument(f"seed is {seed!r}; use a whole number from 0 to {MAX_SEED}")
    return str(int(seed))


def sample_sql(table: str, percent: float, seed: int | None = None) -> str:
    """``select * from <table> sample bernoulli (<percent>) [seed (<seed>)]`` from validated parts."""
    parts = ["select * from", quote_table(table), "sample bernoulli", "(" + _percent_literal(percent) + ")"]
    if seed is not None:
        parts += ["seed", "(" + _seed_literal(seed) + ")"]
    return " ".join(parts)


def sample(table: str, percent: float, seed: int | None = None) -> pd.DataFrame:
    """About ``percent`` % of ``table``'s rows (each row kept with that probability).

    The same ``seed`` gives the same rows while the table is unchanged. Snowflake refuses a seed on
    views (sample the underlying table instead).
    """
    return query(sample_sql(table, percent, seed))


# -------------------------------------------------------------------------------------- S3 results

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")


def result_key(name: str) -> str:
    """``results/<name>.parquet`` for a safe name: letters, digits, ``_ . -``, ``/`` between folders."""
    if isinstance(name, str) and name.endswith(".parquet"):
        name = name[: -len(".parquet")]
    if not isinstance(name, str) or len(name) > MAX_RESULT_NAME or ".." in name or not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"result name {name!r} is not usable: use letters, digits, '_', '.', '-' and '/' between "
            f"folder names (no leading '/', no '..', at most {MAX_RESULT_NAME} characters), e.g. "
            "'housing/sample_2024'"
        )
    return f"{RESULTS_PREFIX}{name}.parquet"


@dataclasses.dataclass(frozen=True)
class _Results:
    s3: Any
    bucket: str
    key: str
    settings: RuntimeSettings
    settings_file: Path

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _results_location(name: str) -> _Results:
    key = result_key(name)
    path = settings_path(_state["path"])
    settings = load_settings(path)
    if not settings.bucket:
        raise ResultsError(
            f"settings file {path} names no results bucket; redeploy the stacks so the notebook "
            "settings are regenerated, then restart the notebook instance"
        )
    boto3 = _import("boto3", path)
    from snowsage import aws

    with aws.sdk_loggers_quiet():
        s3 = boto3.client("s3", region_name=settings.region)
    return _Results(s3, settings.bucket, key, settings, path)


def _bucket_missing(where: _Results) -> bool:
    """After a 404 on an object: is it the bucket that is missing? (HeadObject cannot tell.)"""
    from snowsage import aws

    try:
        with aws.sdk_loggers_quiet():
            where.s3.head_bucket(Bucket=where.bucket)
    except Exception as exc:  # noqa: BLE001 - only a clear "no such bucket" counts
        return str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code")) in (
            "404",
            "NoSuchBucket",
            "NotFound",
        )
    return False


def _object_missing(where: _Results) -> bool:
    """After a 403 on a read: is the object simply absent? The notebook role may list only its own
    prefixes, so S3 answers a missing key with 403 rather than 404; a listing of exactly that key
    (which the role may make) tells the two apart."""
    from snowsage import aws

    try:
        with aws.sdk_loggers_quiet():
            found = where.s3.list_objects_v2(Bucket=where.bucket, Prefix=where.key, MaxKeys=1)
    except Exception:  # noqa: BLE001 - a listing that fails too leaves the denial as it is
        return False
    return not any(item.get("Key") == where.key for item in found.get("Contents", []))


def _s3_error(exc: BaseException, action: str, where: _Results, name: str) -> ResultsError:
    from snowsage import aws

    code = aws.error_code(exc) or ""
    uri, bucket, settings = where.uri, where.bucket, where.settings
    if code == "NoSuchBucket" or (code in ("NoSuchKey", "404", "NotFound") and _bucket_missing(where)):
        return ResultsError(
            f"the results bucket {bucket} does not exist in {settings.region}: the bucket name in "
            f"{where.settings_file} does not match the SnowSage-{settings.env_name}-Data stack's "
            "ResultsBucketName output, or that stack's bucket was deleted. Compare the two; redeploy "
            "the Data stack if the bucket is gone, else the Notebook stack, then restart the notebook "
            "instance so the settings file names the right bucket"
        )
    if code in ("NoSuchKey", "404", "NotFound") or (
        action == "reading" and code in ("AccessDenied", "403", "Forbidden") and _object_missing(where)
    ):
        return ResultsError(f"there is no result {name!r} ({uri}); write it first with to_s3(df, {name!r})")
    if code in ("AccessDenied", "403", "Forbidden"):
        return ResultsError(
            f"{action} {uri} was denied: the notebook role may use only its own results bucket; "
            "redeploy the Notebook stack if this is that bucket"
        )
    if aws.is_throttling(exc):
        return ResultsError(
            f"{action} {uri} was throttled by S3 ({code}) even after retries: wait a minute and "
            "re-run this cell, and write fewer objects at the same moment (one to_s3 per result)"
        )
    if aws.is_bad_credentials(exc):
        return ResultsError(
            f"{action} {uri} failed: AWS rejected this kernel's credentials ({code}). The notebook "
            "role's own credentials renew themselves, so credentials set in the kernel (AWS_* "
            "environment variables, a profile or an assumed-role session) expired: refresh them, or "
            "remove them and restart the kernel (Kernel > Restart) to use the notebook role again"
        )
    return ResultsError(f"{action} {uri} failed ({_aws_error(exc)}); check the S3 route and retry")


def to_s3(df: pd.DataFrame, name: str) -> str:
    """Write ``df`` as Parquet to ``s3://<results bucket>/results/<name>.parquet``; returns the URI."""
    pd = _import("pandas", settings_path(_state["path"]))
    if not isinstance(df, pd.DataFrame):
        raise InvalidArgument(f"to_s3 writes a pandas DataFrame; got {type(df).__name__}")
    where = _results_location(name)
    path = settings_path(_state["path"])
    pa = _import("pyarrow", path)
    pq = _import("pyarrow.parquet", path)
    try:
        table = pa.Table.from_pandas(df)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidArgument(
            f"the DataFrame cannot be stored as Parquet ({exc}); give that column one type, e.g. "
            "df[col] = df[col].astype(str)"
        ) from None
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    buffer.seek(0)
    from snowsage import aws

    try:
        with aws.sdk_loggers_quiet():
            where.s3.upload_fileobj(buffer, where.bucket, where.key)  # multipart above 8 MB
    except Exception as exc:  # noqa: BLE001 - every S3 failure becomes one ResultsError
        raise _s3_error(exc, "writing", where, name) from None
    return where.uri


def read_s3(name: str) -> pd.DataFrame:
    """Read back what ``to_s3(df, name)`` wrote."""
    where = _results_location(name)
    path = settings_path(_state["path"])
    pq = _import("pyarrow.parquet", path)
    _import("pandas", path)
    from snowsage import aws

    buffer = io.BytesIO()
    try:
        with aws.sdk_loggers_quiet():
            where.s3.download_fileobj(where.bucket, where.key, buffer)
    except Exception as exc:  # noqa: BLE001 - every S3 failure becomes one ResultsError
        raise _s3_error(exc, "reading", where, name) from None
    buffer.seek(0)
    return pq.read_table(buffer).to_pandas()
