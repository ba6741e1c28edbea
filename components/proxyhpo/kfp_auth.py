"""How proxyhpo authenticates to Kubeflow Pipelines: the credentials come from the environment, and only from there.

- ``KFP_TOKEN``: a bearer token, ``kfp.Client(existing_token=...)`` (e.g. ``kubectl -n <profile namespace> create
  token default-editor --audience pipelines.kubeflow.org``).
- ``KFP_COOKIES``: a session cookie, ``kfp.Client(cookies=...)`` (e.g. the browser's ``authservice_session=...``
  behind Dex or oauth2-proxy).

Neither is ever printed, logged or written; messages name the variables, never their values. Every caller
that talks to KFP gets its client (:func:`client`) or its HTTP headers (:func:`request_headers`, the
preflight's health check) here. This module imports only the standard library at the top (the CLI's parser
imports :mod:`proxyhpo.deploy`, which imports it); ``kfp`` is imported by :func:`client`.

Example:
    >>> client_arguments({"KFP_TOKEN": " t0k3n\\n"})
    {'existing_token': 't0k3n'}
    >>> describe({"KFP_COOKIES": "authservice_session=c"})
    'cookies from KFP_COOKIES'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["CREDENTIAL_VARIABLES", "HOW_TO_AUTHENTICATE", "client_arguments", "given", "describe", "request_headers", "client", "with_deadline"]

#: ``kfp.Client`` keyword -> the environment variable that gives it.
CREDENTIAL_VARIABLES = {"existing_token": "KFP_TOKEN", "cookies": "KFP_COOKIES"}
#: The fix a message gives when KFP asks for a login or refuses the credentials.
HOW_TO_AUTHENTICATE = (
    "set KFP_TOKEN to a bearer token (e.g. `kubectl -n <profile namespace> create token default-editor --audience pipelines.kubeflow.org`)"
    " or KFP_COOKIES to your browser's session cookie (e.g. 'authservice_session=...')"
)


def client_arguments(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``kfp.Client`` keyword arguments from the environment (``os.environ`` by default): ``existing_token``, ``cookies``."""
    env = os.environ if env is None else env
    return {keyword: env[variable].strip() for keyword, variable in CREDENTIAL_VARIABLES.items() if env.get(variable, "").strip()}


def given(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The credential variables set in the environment, e.g. ``("KFP_TOKEN",)``."""
    return tuple(CREDENTIAL_VARIABLES[keyword] for keyword in client_arguments(env))


def describe(env: Mapping[str, str] | None = None) -> str:
    """Which credentials a client gets, in words, without their values: ``existing_token from KFP_TOKEN``, ``no credentials``."""
    return " and ".join(f"{keyword} from {CREDENTIAL_VARIABLES[keyword]}" for keyword in client_arguments(env)) or "no credentials"


def request_headers(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """HTTP headers carrying the credentials, for a call to the KFP API without ``kfp.Client`` (the health check)."""
    auth = client_arguments(env)
    headers = {"Accept": "application/json"}
    if "existing_token" in auth:
        headers["Authorization"] = f"Bearer {auth['existing_token']}"
    if "cookies" in auth:
        headers["Cookie"] = auth["cookies"]
    return headers


def client(host: str, *, namespace: str = "kubeflow", env: Mapping[str, str] | None = None) -> Any:
    """A ``kfp.Client`` for ``host`` with the environment's credentials.

    Given a ``namespace`` (always, here), ``kfp.Client`` does not call the server when constructed; a multi-user cluster's
    runs go to the profile namespace. Every call it makes has a deadline
    (``PROXYHPO_KFP_CONNECT_TIMEOUT``, ``PROXYHPO_KFP_READ_TIMEOUT``, :mod:`proxyhpo.settings`): the generated API
    client waits without end by default, so a host that accepts the connection and never answers would hang
    ``upload`` and ``run --host``.
    """
    import kfp

    from proxyhpo.settings import proxyhpo_settings

    settings = proxyhpo_settings()
    # urllib3 logs each retry of a failed call as a warning: the caller's one line says what failed, once
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    kfp_client = kfp.Client(host=host, namespace=namespace, **client_arguments(env))
    with_deadline(kfp_client, (settings.kfp_connect_timeout, settings.kfp_read_timeout))
    return kfp_client


def with_deadline(kfp_client: Any, timeout: tuple[float, float]) -> None:
    """Give every call of ``kfp_client``'s API client the ``(connect, read)`` ``timeout`` a call does not set itself."""
    rest = getattr(getattr(getattr(kfp_client, "_run_api", None), "api_client", None), "rest_client", None)
    if rest is None:  # a stand-in client (the tests' recorders): nothing to wait on
        return
    request = rest.request  # kfp_server_api's RESTClientObject, shared by every *ServiceApi

    def request_with_deadline(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return request(*args, _request_timeout=_request_timeout or timeout, **kwargs)

    rest.request = request_with_deadline
