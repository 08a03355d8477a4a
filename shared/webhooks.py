"""Webhooks' rules: which callback URLs may be called, how a delivery is signed, and when a
failed one is tried again. The API checks a URL at submit; the worker that delivers checks it
again against a fresh resolution and connects to the very address it checked (see
worker.webhooks), so that a host name that resolves elsewhere by then (DNS rebinding) cannot
reach an address the first check refused.

A delivery is signed much as Stripe's are: `Ladder-Signature: t=<unix time>,v1=<hex>`, where the
hex is HMAC-SHA256, keyed with the job's API key's webhook secret, over
`<t>.<delivery id>.<body>`, the delivery id being the `Ladder-Delivery` header's (digits). A
receiver recomputes it over that header and the raw body, and refuses a `t` too far from its
clock (a replay). The id is signed so that a receiver may key its de-duplication on it: no one
without the secret can make a delivery pass for another one.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.kinds import FieldError

MAX_URL = 2048
"""The longest callback URL (the column's width)."""
SIGNATURE_HEADER = "Ladder-Signature"
DELIVERY_HEADER = "Ladder-Delivery"
LONGEST_RETRY = 3600
"""The longest wait between two attempts at one delivery, seconds."""
TOLERANCE = 300
"""How old a signature's timestamp a receiver should accept, seconds."""

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""A host name and port to the addresses it resolves to; OSError when it resolves to none."""

METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean…
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure's wire server: a public address
        "192.0.0.192",  # Oracle Cloud
    )
)
"""Cloud metadata services, which hand out the host's credentials: never a callback's target,
whatever LADDER_WEBHOOK_ALLOW_PRIVATE says."""
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


NON_PUBLIC = "a non-public address"
"""What a refusal of a host name says of what it resolves to."""


class RefusedTarget(ValueError):
    """A callback URL Ladder will not call; the message says why, for the client."""


@dataclass(frozen=True)
class Target:
    """A callback URL taken apart: what to connect to, and what to ask for there."""

    scheme: str
    host: str
    """The host as the URL names it (an IDN in its ASCII form), for Host and TLS' SNI."""
    port: int
    path: str
    """The path and query, as sent in the request line."""


def parse(url: str) -> Target:
    """A callback URL's parts; RefusedTarget for one that is not an absolute http(s) URL."""
    if len(url) > MAX_URL:
        raise RefusedTarget(f"is longer than {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise RefusedTarget("must not hold spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedTarget(f"is not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise RefusedTarget("must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise RefusedTarget("must not hold a user name or password")
    host = parts.hostname or ""
    if not host:
        raise RefusedTarget("has no host")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise RefusedTarget(f"has a host name that is not valid: {parts.hostname!r}") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if not path.isascii():
        raise RefusedTarget("must percent-encode its path and query (ASCII only there)")
    return Target(scheme, host, port or (443 if scheme == "https" else 80), path)


def literal(host: str) -> Address | None:
    """The address a host names outright (`10.0.0.1`, `::1`), or None for a host name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def refusal(address: Address, allow_private: bool) -> str | None:
    """Why Ladder will not call this address, or None when it may."""
    inner = _embedded_ipv4(address)
    if inner is not None and inner != address:
        why = refusal(inner, allow_private)
        return f"an IPv6 form of {inner}: {why}" if why else None
    if address in METADATA:
        return "a cloud metadata address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        kind = "a loopback address"
    elif address.is_link_local:
        kind = "a link-local address"
    elif isinstance(address, ipaddress.IPv4Address) and address in CGNAT:
        kind = "a shared (CGNAT) address"
    elif address.is_reserved:
        kind = "a reserved address"
    elif address.is_private:
        kind = "a private address"
    elif not address.is_global:
        kind = "a reserved address"
    elif isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        kind = "a site-local address"
    else:
        return None
    if allow_private:
        return None
    return f"{kind}, refused unless LADDER_WEBHOOK_ALLOW_PRIVATE is set"


def _embedded_ipv4(address: Address) -> Address | None:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4): what it would reach."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in SIX_TO_FOUR:
        return address.sixtofour
    return None


def resolve(host: str, port: int) -> list[str]:
    """The system resolver's addresses for `host`, in its order of preference."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def addresses(target: Target, allow_private: bool, resolver: Resolver = resolve) -> list[Address]:
    """Every address the target's host resolves to, each one allowed; RefusedTarget when any is
    not (a name with one private answer among public ones is refused: a rebinding trick)."""
    fixed = literal(target.host)
    if fixed is not None:
        found = [fixed]
    else:
        unknown = f"has a host name that does not resolve: {target.host}"
        try:
            # A link-local IPv6 answer may carry its interface (`fe80::1%eth0`).
            answers = resolver(target.host, target.port)
            found = [ipaddress.ip_address(a.split("%", 1)[0]) for a in answers]
        except (OSError, UnicodeError, ValueError) as exc:
            raise RefusedTarget(f"{unknown} ({exc})") from None
        if not found:
            raise RefusedTarget(unknown)
    for address in found:
        why = refusal(address, allow_private)
        if why is not None:
            if fixed is None:
                # Neither the address nor what kind it is: they would tell whoever submits
                # how the names of Ladder's network resolve.
                raise RefusedTarget(f"resolves to {NON_PUBLIC}")
            raise RefusedTarget(f"is {why}")
    return found


def check_url(
    url: str, allow_private: bool, resolver: Resolver = resolve, field: str = "callback_url"
) -> list[FieldError]:
    """The field errors for a callback URL at submit, none when Ladder may call it."""
    try:
        addresses(parse(url), allow_private, resolver)
    except RefusedTarget as exc:
        return [FieldError(field, str(exc))]
    return []


def sign(secret: str, delivery: str, body: bytes, at: int | None = None) -> str:
    """The `Ladder-Signature` header's value for `body` of the delivery whose `Ladder-Delivery`
    is `delivery`, sent at `at` (UNIX seconds)."""
    at = int(time.time()) if at is None else at
    signed = f"{at}.{delivery}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def verify(
    secret: str,
    header: str,
    delivery: str,
    body: bytes,
    tolerance: int = TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether `header` (Ladder-Signature) is a good signature of the delivery `delivery`
    (Ladder-Delivery) with this `body`, made within `tolerance` seconds of `now`: what a
    receiver runs (the README has it standalone)."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    stamp = fields.get("t", [""])[0]
    # Digits both: a `.` in either would let one signed string pass for another.
    if not (stamp.isascii() and stamp.isdigit() and delivery.isascii() and delivery.isdigit()):
        return False
    at = int(stamp)
    now = time.time() if now is None else now
    if abs(now - at) > tolerance:
        return False
    expected = sign(secret, delivery, body, at).partition(",v1=")[2].encode()
    # As bytes: compare_digest refuses str with non-ASCII characters, which a header may hold.
    return any(hmac.compare_digest(expected, given.encode()) for given in fields.get("v1", []))


def retry_delay(failed_attempts: int, first: int) -> int:
    """Seconds to wait after the `failed_attempts`-th failure: `first`, then doubling, at most
    an hour (30 s, 1 m, 2 m, 4 m, … 1 h by default)."""
    first = max(1, first)
    if failed_attempts > 32:  # 2**32 s is well past the cap; no need to compute it
        return LONGEST_RETRY
    return min(LONGEST_RETRY, first * 2 ** (max(1, failed_attempts) - 1))


def schedule(first: int, retry_for: int) -> list[int]:
    """Seconds after the job ended at which each attempt is due, the first at 0: the whole plan
    of a delivery that never succeeds (for the README and the tests)."""
    at, plan = 0, [0]
    while True:
        at += retry_delay(len(plan), first)
        if at > retry_for:
            return plan
        plan.append(at)
