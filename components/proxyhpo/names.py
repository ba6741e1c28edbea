"""The one naming rule for what a user names: a study (its MLflow and Kubeflow experiment), a trial id.

A name becomes a file name (``<trial_id>.pt``, ``logs/<study>-<time>.log``, ``pipelines/<kind>-<study>.yaml``),
an MLflow run or experiment name, a Kubeflow pipeline and experiment name, a Kubernetes label and a YAML
scalar. So it must stay inside its folder (no separator, no ``..``, no leading dot), must be one line (no
newline, no control character, no ``:`` or ``#`` a YAML reader would parse) and must fit a Kubernetes label
(63 characters) once a pipeline kind is put before it (``proxy-network-<study>``).

Example:
    >>> check_name("demo-spleen", "name")
    'demo-spleen'
    >>> check_name("x/../../outside", "name")
    Traceback (most recent call last):
    ...
    ValueError: name 'x/../../outside' is not a safe file name: use letters, digits and '._-' ...
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["Name", "PathText", "check_path_text", "NAME_PATTERN", "TRIAL_ID_PATTERN", "STUDY_NAME_MAX", "TRIAL_ID_MAX", "check_name", "check_trial_id"]

#: A study or experiment name: starts with a letter or digit; letters, digits, '.', '_' and '-' after it.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: A trial id: the same, with '+' too (ids like ``r0+p1``: a round and a proposal).
TRIAL_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
#: Longest study name: the longest pipeline kind's prefix (``proxy-network-``, 14) plus this fits a
#: Kubernetes label value (63).
STUDY_NAME_MAX = 48
#: Longest trial id: a file name (255 bytes) with room for the suffixes and the study's prefix.
TRIAL_ID_MAX = 200

_RULE = "use letters, digits and '{chars}' only, starting with a letter or digit, without '..', at most {limit} characters"


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _check(value: str, what: str, pattern: re.Pattern[str], chars: str, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > limit or not pattern.fullmatch(value) or ".." in value:
        raise ValueError(f"{what} {_shown(value)} is not a safe file name: {_RULE.format(chars=chars, limit=limit)}")
    return value


def check_name(value: str, what: str = "name") -> str:
    """Return ``value`` if it is a safe study or experiment name (:data:`NAME_PATTERN`).

    Raises:
        ValueError: naming ``what``, the value (cut short) and the rule.
    """
    return _check(value, what, NAME_PATTERN, "._-", STUDY_NAME_MAX)


def check_trial_id(value: str, what: str = "trial_id") -> str:
    """Return ``value`` if it is a safe trial id (:data:`TRIAL_ID_PATTERN`).

    Raises:
        ValueError: naming ``what``, the value (cut short) and the rule.
    """
    return _check(value, what, TRIAL_ID_PATTERN, "._+-", TRIAL_ID_MAX)


#: A pydantic field type of a study or experiment name under the rule (``name: Name``).
Name = Annotated[str, AfterValidator(lambda value: check_name(value, "name"))]


def check_path_text(value: str | None) -> str | None:
    """Return ``value`` if it can name a file at all: no NUL byte (every system call refuses one).

    Raises:
        ValueError: when it holds a NUL byte.
    """
    if value is not None and "\0" in value:
        raise ValueError(f"{_shown(value)} holds a NUL byte, which no file name can")
    return value


#: A pydantic field type of a path or URL a user writes (``dataset: PathText``).
PathText = Annotated[str, AfterValidator(check_path_text)]
