"""Checking a webhook from Ladder: `verify(secret, signature, delivery, body)` on the raw body.

    from ladder_client.webhooks import verify

    headers = request.headers
    if not verify(secret, headers["Ladder-Signature"], headers["Ladder-Delivery"],
                  request.get_data()):
        abort(400)

The secret is the API key's: `GET /api/v1/webhook-secret`. The signature header is
`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<delivery>.<body>">`, the delivery the
`Ladder-Delivery` header's id; a `t` more than `tolerance` seconds from this machine's clock is
refused, so that a captured request cannot be replayed later, and the id is signed, so that a
receiver that keeps the ids it has seen cannot be made to take one request twice.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Ladder-Signature"
DELIVERY_HEADER = "Ladder-Delivery"
"""The same on every attempt of one delivery: a receiver that may see one twice keys on it."""


def verify(
    secret: str,
    header: str,
    delivery: str,
    body: bytes,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """Whether `header` signs exactly this delivery id and these body bytes with `secret`, made
    within `tolerance` seconds of `now` (this machine's clock by default)."""
    fields = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    stamp = next((value for name, value in fields if name == "t"), "")
    # Digits both: a `.` in either would let one signed string pass for another.
    if not (stamp.isascii() and stamp.isdigit() and delivery.isascii() and delivery.isdigit()):
        return False
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > tolerance:
        return False
    signed = f"{stamp}.{delivery}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    # As bytes: compare_digest refuses str with non-ASCII characters, which a header may hold.
    given = (value.encode() for name, value in fields if name == "v1")
    return any(hmac.compare_digest(expected.encode(), value) for value in given)
