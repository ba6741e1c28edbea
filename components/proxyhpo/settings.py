"""The ``PROXYHPO_*`` environment variables that tune how proxyhpo waits on servers, parsed and bounded.

Each is read by pydantic-settings and checked against bounds: an unbounded retry count or a zero timeout
would make a hung server cost forever (or nothing at all); a bad value is one line naming the variable.

==============================  =========  ==============================================================
variable                        default    meaning
==============================  =========  ==============================================================
``PROXYHPO_S3_RETRIES``         4          retries of one S3 call after its first attempt (0..10)
``PROXYHPO_S3_CONNECT_TIMEOUT`` 5          seconds to wait for the S3 server to accept a connection
``PROXYHPO_S3_READ_TIMEOUT``    120        seconds to wait for the S3 server's next bytes
``PROXYHPO_KFP_CONNECT_TIMEOUT`` 10        seconds to wait for the Kubeflow Pipelines API to accept a connection
``PROXYHPO_KFP_READ_TIMEOUT``   120        seconds to wait for its answer to one call
``PROXYHPO_HOME``               .proxyhpo  where data, artifacts and the MLflow store live (empty: unset)
==============================  =========  ==============================================================

A hung S3 server thus costs at most ``(retries + 1) x (connect + read timeout)`` plus the back-off waits; a hung
Kubeflow host at most the KFP connect and read timeouts per call, then one line.

Example:
    >>> import os; os.environ["PROXYHPO_S3_RETRIES"] = "2"
    >>> proxyhpo_settings().s3_retries
    2
"""

from __future__ import annotations

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from proxyhpo.config.base import brief
from proxyhpo.errors import ConfigError

__all__ = ["ProxyHPOSettings", "proxyhpo_settings", "MAX_S3_RETRIES"]

#: Most retries of one S3 call: ten waits of up to 4 s, about 35 s of back-off.
MAX_S3_RETRIES = 10


class ProxyHPOSettings(BaseSettings):
    """The bounded ``PROXYHPO_*`` settings (see the module's table)."""

    model_config = SettingsConfigDict(env_prefix="PROXYHPO_", extra="ignore", frozen=True)

    s3_retries: int = Field(4, ge=0, le=MAX_S3_RETRIES)
    s3_connect_timeout: float = Field(5.0, gt=0, le=300, allow_inf_nan=False)
    s3_read_timeout: float = Field(120.0, gt=0, le=3600, allow_inf_nan=False)
    kfp_connect_timeout: float = Field(10.0, gt=0, le=300, allow_inf_nan=False)
    kfp_read_timeout: float = Field(120.0, gt=0, le=3600, allow_inf_nan=False)
    home: str = ".proxyhpo"

    @field_validator("home")
    @classmethod
    def _home(cls, value: str) -> str:
        # PROXYHPO_HOME="" would put the store in the current folder: an empty value means unset
        if "\0" in value:
            raise ValueError("holds a NUL byte")
        return value.strip() or ".proxyhpo"


#: What each setting must be, for the fix of a bad value.
_EXPECTED = {
    "s3_retries": f"a whole number from 0 to {MAX_S3_RETRIES}",
    "s3_connect_timeout": "a number of seconds above 0 and at most 300",
    "s3_read_timeout": "a number of seconds above 0 and at most 3600",
    "kfp_connect_timeout": "a number of seconds above 0 and at most 300",
    "kfp_read_timeout": "a number of seconds above 0 and at most 3600",
    "home": "a folder path",
}


def proxyhpo_settings() -> ProxyHPOSettings:
    """The current ``PROXYHPO_*`` settings, read from the environment now.

    Raises:
        ConfigError: naming the variable, its value (cut short) and what it must be.
    """
    try:
        return ProxyHPOSettings()
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "home"
        variable = f"PROXYHPO_{field.upper()}"
        expected = _EXPECTED.get(field, "a valid value")
        raise ConfigError(
            variable, f"is {brief(error.get('input'), 40)!r}, not {expected}", f"set {variable} to {expected}, or unset it for the default"
        ) from None
