"""Limits counted in Redis across API processes: requests per API key, and failed
authentications (unknown or revoked tokens, failed sign-ins) per client address.

A fixed window per calendar minute: one INCR per request, and a client over a limit learns
from Retry-After when the next minute starts. The request limit guards the service from a
runaway client; it is not a quota. The failure limit makes guessing tokens slow: past it, every
attempt to authenticate from that address is refused until the minute ends, a good token's
too, so that a guesser learns nothing from the answers. With Redis away the request goes
through (anything it then asks of the broker gets the broker's own 503).
"""

from __future__ import annotations

import logging
import math
import time

from flask import request
from redis.exceptions import RedisError

from api.context import ladder
from api.problems import Problem

log = logging.getLogger(__name__)


def count(key_id: int) -> None:
    """Count one request for the key; a 429 past `LADDER_RATE_LIMIT` requests this minute, or
    when its address is past its failed authentications. One round trip for both."""
    ctx = ladder()
    limit, failures_limit = ctx.settings.rate_limit, ctx.settings.auth_failures_per_minute
    if limit <= 0 and failures_limit <= 0:
        return
    now = time.time()
    name = f"ladder:rate:{key_id}:{int(now // 60)}"
    try:
        pipe = ctx.redis.pipeline()
        pipe.get(_failures_name(now))
        if limit > 0:
            pipe.incr(name)
            pipe.expire(name, 61)
        failed, *used = pipe.execute()
    except RedisError:
        log.warning("could not count a request against the rate limit", exc_info=True)
        return
    _refuse_past_failures(int(failed or 0), now)
    if used and int(used[0]) > limit:
        wait = _until_next_minute(now)
        raise Problem(
            429,
            f"this API key is over its limit of {limit} requests a minute (LADDER_RATE_LIMIT); "
            f"try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def refuse_failing_address() -> None:
    """A 429 when this client's address is past its failed authentications this minute."""
    if ladder().settings.auth_failures_per_minute <= 0:
        return
    now = time.time()
    try:
        failed = ladder().redis.get(_failures_name(now))
    except RedisError:
        log.warning("could not read the failed authentications of an address", exc_info=True)
        return
    _refuse_past_failures(int(failed or 0), now)


def count_failure() -> None:
    """Count a failed authentication against this client's address; a 429 once it is past
    `LADDER_AUTH_FAILURES_PER_MINUTE`, in place of the 401 the caller would answer."""
    if ladder().settings.auth_failures_per_minute <= 0:
        return
    now = time.time()
    name = _failures_name(now)
    try:
        pipe = ladder().redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, 61)
        failed = int(pipe.execute()[0])
    except RedisError:
        log.warning("could not count a failed authentication", exc_info=True)
        return
    _refuse_past_failures(failed, now)


def _failures_name(now: float) -> str:
    return f"ladder:authfail:{request.remote_addr or '-'}:{int(now // 60)}"


def _refuse_past_failures(failed: int, now: float) -> None:
    limit = ladder().settings.auth_failures_per_minute
    if 0 < limit < failed:
        wait = _until_next_minute(now)
        raise Problem(
            429,
            f"too many failed authentications from this address: more than {limit} a minute "
            f"(LADDER_AUTH_FAILURES_PER_MINUTE); try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def _until_next_minute(now: float) -> int:
    return max(1, math.ceil(60 - now % 60))
