"""Flower's start-up check: authentication configured, or an explicit opt-out, or no start."""

import pytest

from rewards import settings
from workers.flower_guard import (
    MALFORMED_BASIC_AUTH_MESSAGE,
    MISSING_AUTH_MESSAGE,
    authentication_problem,
)


@pytest.mark.parametrize(
    ("basic_auth", "oauth_emails", "unsafe_no_auth"),
    [
        (["ops:s3cret"], "", False),
        (["ops:s3cret", "oncall:an0ther"], None, False),
        (None, r".*@example\.com", False),
        (None, "", True),
        ([], None, True),
    ],
)
def test_flower_may_start_with_authentication_or_the_explicit_opt_out(basic_auth, oauth_emails,
                                                                      unsafe_no_auth):
    assert authentication_problem(basic_auth, oauth_emails, unsafe_no_auth=unsafe_no_auth) is None


@pytest.mark.parametrize(
    ("basic_auth", "oauth_emails"),
    [(None, None), ([], ""), ([""], "   ")],
)
def test_flower_without_authentication_is_refused_with_what_to_set(basic_auth, oauth_emails):
    problem = authentication_problem(basic_auth, oauth_emails, unsafe_no_auth=False)
    assert problem == MISSING_AUTH_MESSAGE
    assert "FLOWER_BASIC_AUTH=user:password" in problem and "REWARDS_FLOWER_UNSAFE_NO_AUTH=1" in problem


@pytest.mark.parametrize("credentials", ["s3cret", "ops:", ":s3cret", "ops:s3cret,s3cret"])
def test_a_malformed_credential_is_refused_even_with_the_opt_out_and_never_echoed(credentials):
    problem = authentication_problem(credentials.split(","), None, unsafe_no_auth=True)
    assert problem == MALFORMED_BASIC_AUTH_MESSAGE
    assert "s3cret" not in problem


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_the_opt_out_is_read_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("REWARDS_FLOWER_UNSAFE_NO_AUTH", value)
    assert settings.load().flower_unsafe_no_auth is expected
