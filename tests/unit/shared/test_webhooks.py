"""Webhooks' rules without a network: which callback URLs Ladder calls (host names resolved by a
stub), the signature a receiver checks, and the retry schedule."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import importlib.util
import itertools
import socket
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from shared import webhooks
from shared.config import Settings
from shared.webhooks import check_url, parse, retry_delay, schedule, sign, verify

PUBLIC = "93.184.215.14"


def resolver(table: dict[str, list[str]]) -> webhooks.Resolver:
    """A resolver that knows only `table`; any other name is unknown, as NXDOMAIN."""

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


NOWHERE = resolver({})


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://127.8.9.10:8080/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://172.16.5.4/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://169.254.1.1/hook", "link-local"),
        ("http://100.64.0.7/hook", "CGNAT"),
        ("http://224.0.0.251/hook", "multicast"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://240.0.0.1/hook", "reserved"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://100.100.100.200/", "metadata"),
        ("http://168.63.129.16/", "metadata"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::]/hook", "unspecified"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[fc00::5]/hook", "private"),
        ("http://[fd12:3456::1]:9000/hook", "private"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://[ff02::1]/hook", "multicast"),
        ("http://[::ffff:127.0.0.1]/hook", "127.0.0.1"),
        ("http://[::ffff:169.254.169.254]/hook", "metadata"),
        ("http://[64:ff9b::a00:1]/hook", "10.0.0.1"),
        ("http://[2002:a9fe:a9fe::1]/hook", "metadata"),
    ],
)
def test_addresses_that_are_not_public_are_refused(url: str, why: str) -> None:
    errors = check_url(url, allow_private=False, resolver=NOWHERE)
    assert [e.field for e in errors] == ["callback_url"]
    assert why in errors[0].message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://10.1.2.3/hook",
        "http://100.64.0.7/hook",
        "http://169.254.1.1/hook",
        "http://[::1]/hook",
        "http://[fd12:3456::1]/hook",
    ],
)
def test_allow_private_opens_private_addresses(url: str) -> None:
    assert check_url(url, allow_private=True, resolver=NOWHERE) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "http://224.0.0.251/",
        "http://0.0.0.0/",
    ],
)
def test_metadata_multicast_and_unspecified_stay_refused_with_allow_private(url: str) -> None:
    assert check_url(url, allow_private=True, resolver=NOWHERE) != []


def test_public_addresses_and_names_are_allowed() -> None:
    names = resolver({"hooks.example.com": [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    assert check_url("https://hooks.example.com/in?x=1", False, names) == []
    assert check_url(f"http://{PUBLIC}:8443/", False, names) == []
    assert check_url("https://[2606:4700:4700::1111]/hook", False, names) == []


@pytest.mark.parametrize(
    ("answers", "metadata"),
    [
        (["127.0.0.1"], False),
        (["10.0.0.5"], False),
        (["169.254.169.254"], True),
        (["::1"], False),
        (["fe80::1%eth0"], False),
        # One private answer among public ones is a rebinding trick: the whole name is refused.
        ([PUBLIC, "192.168.1.1"], False),
    ],
)
def test_names_that_resolve_to_refused_addresses_are_refused_without_saying_which(
    answers: list[str], metadata: bool
) -> None:
    names = resolver({"evil.example": answers})
    (error,) = check_url("https://evil.example/hook", False, names)
    # Neither the address nor its kind: they would map the names inside Ladder's network.
    assert error.message == "resolves to a non-public address"
    assert not any(answer.split("%")[0] in error.message for answer in answers)
    # LADDER_WEBHOOK_ALLOW_PRIVATE opens all of these but the metadata service.
    assert (check_url("https://evil.example/hook", True, names) == []) is not metadata
    if metadata:
        (error,) = check_url("https://evil.example/hook", True, names)
        assert error.message == "resolves to a non-public address"


def test_a_name_that_does_not_resolve_is_refused_by_name() -> None:
    errors = check_url("https://no-such-host.example/hook", False, NOWHERE)
    assert "does not resolve: no-such-host.example" in errors[0].message
    empty = resolver({"x.example": []})
    assert "does not resolve" in check_url("https://x.example/", False, empty)[0].message


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/hook", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("gopher://example.com:70/", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("https://user:pass@example.com/hook", "user name or password"),
        ("https://user@example.com/hook", "user name or password"),
        ("https:///hook", "no host"),
        ("https://example.com:99999/", "not a URL"),
        ("https://example.com/a b", "spaces"),
        ("https://example.com/\nHost: x", "spaces"),
        ("https://example.com/\x00", "control"),
        ("https://example.com/é", "percent-encode"),
        ("https://example.com/" + "a" * 2100, "longer than 2048"),
    ],
)
def test_malformed_urls_are_refused(url: str, why: str) -> None:
    errors = check_url(url, allow_private=True, resolver=resolver({"example.com": [PUBLIC]}))
    assert len(errors) == 1 and why in errors[0].message, errors


def test_parse_gives_what_to_connect_to() -> None:
    target = parse("HTTPS://Hooks.Example.com/in/ladder?team=7#frag")
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 443)
    assert target.path == "/in/ladder?team=7"
    assert parse("http://[::1]:8080").port == 8080 and parse("http://[::1]:8080").path == "/"
    assert parse("http://bücher.example/").host == "xn--bcher-kva.example"


def test_a_signature_verifies_with_its_secret_delivery_body_and_time() -> None:
    body = b'{"id":"x","status":"succeeded"}'
    header = sign("whsec_s3cret", "42", body, at=1_700_000_000)
    signed = b"1700000000.42." + body
    expected = hmac.new(b"whsec_s3cret", signed, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify("whsec_s3cret", header, "42", body, now=1_700_000_100)


@pytest.mark.parametrize(
    ("secret", "header", "delivery", "body", "now"),
    [
        ("whsec_other", None, "42", b"{}", 1_700_000_000),  # another key's secret
        ("whsec_s3cret", None, "42", b'{"x":1}', 1_700_000_000),  # another body
        # Another delivery's id: a receiver de-duplicating on it cannot be fooled.
        ("whsec_s3cret", None, "43", b"{}", 1_700_000_000),
        ("whsec_s3cret", None, "4", b"2.{}", 1_700_000_000),  # the same bytes, cut elsewhere
        ("whsec_s3cret", None, "", b"{}", 1_700_000_000),
        ("whsec_s3cret", None, "42", b"{}", 1_700_000_301),  # too old: a replay
        ("whsec_s3cret", None, "42", b"{}", 1_699_999_699),  # too far ahead
        ("whsec_s3cret", "t=1700000000", "42", b"{}", 1_700_000_000),  # no v1
        ("whsec_s3cret", "v1=abc", "42", b"{}", 1_700_000_000),  # no t
        ("whsec_s3cret", "t=soon,v1=abc", "42", b"{}", 1_700_000_000),
        ("whsec_s3cret", "", "42", b"{}", 1_700_000_000),
    ],
)
def test_a_bad_signature_does_not_verify(
    secret: str, header: str | None, delivery: str, body: bytes, now: int
) -> None:
    made = sign("whsec_s3cret", "42", b"{}", at=1_700_000_000)
    assert not verify(secret, made if header is None else header, delivery, body, now=now)


def test_an_id_that_is_not_digits_does_not_verify_even_when_the_bytes_match() -> None:
    """`<t>.<id>.<body>` is unambiguous only for an id without a `.`: Ladder's are digits."""
    made = sign("whsec_s3cret", "42", b"{a.b}", at=1_700_000_000)
    assert verify("whsec_s3cret", made, "42", b"{a.b}", now=1_700_000_000)
    assert not verify("whsec_s3cret", made, "42.{a", b"b}", now=1_700_000_000)


def test_a_header_with_several_signatures_verifies_if_one_does() -> None:
    """What a receiver sees while a secret changes over, if Ladder ever signs with both."""
    good = sign("whsec_s3cret", "42", b"{}", at=1_700_000_000)
    assert verify("whsec_s3cret", f"{good},v1=00ff", "42", b"{}", now=1_700_000_000)


def test_retries_double_from_the_first_up_to_an_hour() -> None:
    assert [retry_delay(n, 30) for n in range(1, 10)] == [
        30, 60, 120, 240, 480, 960, 1920, 3600, 3600,
    ]  # fmt: skip
    assert retry_delay(1000, 30) == 3600
    assert retry_delay(1, 0) == 1  # never a busy loop


def test_the_default_schedule_tries_for_a_day() -> None:
    plan = schedule(30, 86_400)
    assert plan[:4] == [0, 30, 90, 210]
    assert plan[-1] <= 86_400 < plan[-1] + 3600
    assert all(b - a <= 3600 for a, b in itertools.pairwise(plan))
    assert len(plan) == 30  # 8 growing waits to an hour, then hourly to the day's end
    assert schedule(1, 10) == [0, 1, 3, 7]


def test_settings_read_from_the_environment() -> None:
    env = {"LADDER_WEBHOOK_ALLOW_PRIVATE": "yes", "LADDER_WEBHOOK_FIRST_RETRY": "2s",
           "LADDER_WEBHOOK_RETRY_FOR": "12h"}  # fmt: skip
    settings = Settings.from_env(env)
    assert settings.webhook_allow_private is True
    assert (settings.webhook_first_retry, settings.webhook_retry_for) == (2, 43_200)
    defaults = Settings.from_env({})
    assert not defaults.webhook_allow_private
    assert (defaults.webhook_first_retry, defaults.webhook_retry_for) == (30, 86_400)
    assert dataclasses.replace(defaults, webhook_first_retry=1).webhook_first_retry == 1


def test_the_readme_snippet_verifies_what_ladder_signs() -> None:
    """The verification a receiver copies from the README agrees with Ladder's signing."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    start = readme.index("  import hashlib, hmac, time")
    code = textwrap.dedent(readme[start : readme.index("```", start)])
    scope: dict[str, Any] = {}
    exec(code, scope)
    check = scope["verify"]
    body = b'{"id":"x","status":"succeeded"}'
    header = sign("whsec_s3cret", "7", body)
    assert check("whsec_s3cret", header, "7", body)
    assert not check("whsec_other", header, "7", body)
    assert not check("whsec_s3cret", header, "7", body + b" ")
    assert not check("whsec_s3cret", header, "8", body)
    old = sign("whsec_s3cret", "7", body, at=int(time.time()) - 301)
    assert not check("whsec_s3cret", old, "7", body)
    assert not check("whsec_s3cret", "t=,v1=", "7", body)
    assert not check("whsec_s3cret", "garbage", "7", body)
    cut = sign("whsec_s3cret", "7", b"{a.b}")
    assert not check("whsec_s3cret", cut, "7.{a", b"b}")


@pytest.mark.parametrize("header", ["t=1700000000,v1=é", "t=²,v1=00", "t=1700000000,v1=", "=,="])
def test_odd_headers_are_refused_not_raised(header: str) -> None:
    assert not verify("whsec_s3cret", header, "42", b"{}", now=1_700_000_000)


def test_the_sdks_verify_agrees_with_ladders_signing() -> None:
    """client/ladder_client/webhooks.py, loaded by path: the SDK may not be installed here."""
    path = Path(__file__).resolve().parents[3] / "client" / "ladder_client" / "webhooks.py"
    spec = importlib.util.spec_from_file_location("sdk_webhooks", path)
    assert spec is not None and spec.loader is not None
    sdk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sdk)
    body = b'{"id":"x"}'
    header = sign("whsec_s3cret", "42", body, at=1_700_000_000)
    assert sdk.verify("whsec_s3cret", header, "42", body, now=1_700_000_010)
    assert not sdk.verify("whsec_s3cret", header, "43", body, now=1_700_000_010)
    assert not sdk.verify("whsec_s3cret", header, "42", body, now=1_700_000_301)
    assert not sdk.verify("whsec_other", header, "42", body, now=1_700_000_010)
    assert not sdk.verify("whsec_s3cret", "t=1700000000,v1=é", "42", body, now=1_700_000_000)
    assert sdk.SIGNATURE_HEADER == webhooks.SIGNATURE_HEADER
