"""KFP credentials (:mod:`proxyhpo.kfp_auth`): from the environment only, into the client and the HTTP headers,
named but never shown."""

from __future__ import annotations

import pytest

from proxyhpo import kfp_auth

TOKEN, COOKIE = "kfp-token-never-shown-5e1f", "authservice_session=never-shown-c00k1e"


def test_credentials_come_from_the_environment_stripped() -> None:
    env = {"KFP_TOKEN": f" {TOKEN}\n", "KFP_COOKIES": COOKIE}
    assert kfp_auth.client_arguments(env) == {"existing_token": TOKEN, "cookies": COOKIE}
    assert kfp_auth.given(env) == ("KFP_TOKEN", "KFP_COOKIES")
    assert kfp_auth.request_headers(env) == {"Accept": "application/json", "Authorization": f"Bearer {TOKEN}", "Cookie": COOKIE}


@pytest.mark.parametrize("env", [{}, {"KFP_TOKEN": "", "KFP_COOKIES": "  \n"}])
def test_no_credentials_is_an_anonymous_client(env: dict[str, str]) -> None:
    assert kfp_auth.client_arguments(env) == {} and kfp_auth.given(env) == ()
    assert kfp_auth.request_headers(env) == {"Accept": "application/json"}
    assert kfp_auth.describe(env) == "no credentials"


def test_the_description_names_the_variables_never_the_values() -> None:
    described = kfp_auth.describe({"KFP_TOKEN": TOKEN, "KFP_COOKIES": COOKIE})
    assert described == "existing_token from KFP_TOKEN and cookies from KFP_COOKIES"
    assert "never-shown" not in described + kfp_auth.HOW_TO_AUTHENTICATE


def test_the_client_gets_the_host_the_namespace_and_the_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    import kfp

    made: list[dict] = []
    monkeypatch.setattr(kfp, "Client", lambda **arguments: made.append(arguments) or "client")
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    monkeypatch.delenv("KFP_COOKIES", raising=False)
    assert kfp_auth.client("https://kubeflow.example.org/pipeline", namespace="team-a") == "client"
    assert made == [{"host": "https://kubeflow.example.org/pipeline", "namespace": "team-a", "existing_token": TOKEN}]
