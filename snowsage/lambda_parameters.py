"""What both Lambda handlers read the Snowflake credentials with: decrypted SSM parameters through
Powertools' cache. Only the Lambdas import this module; Powertools is in their requirements."""

from __future__ import annotations

from collections.abc import Sequence

from aws_lambda_powertools.utilities import parameters

# Seconds a decrypted value is reused; a handler clears the cache after a failed run, so a fix
# (`snowsage credentials set`) is seen by the very next run.
PARAMETER_MAX_AGE = 60


def fetch_parameters(names: Sequence[str]) -> dict[str, str]:
    """The Fetcher: decrypted values by name; names SSM does not know are absent."""
    values = parameters.get_parameters_by_name(
        parameters={name: {} for name in names},
        decrypt=True,
        max_age=PARAMETER_MAX_AGE,
        raise_on_error=False,
    )
    return {k: v for k, v in values.items() if k != "_errors"}
