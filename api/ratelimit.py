"""A request limit per API key: so many requests a minute, counted in Redis across API processes.

A fixed window per calendar minute: one INCR per request, and a client over the limit learns
from Retry-After when the next minute starts. It guards the service from a runaway client; it
is not a quota. With Redis away the request goes through (anything it then asks of the broker
gets the broker's own 503).
"""

from __future__ import annotations

import logging
import math
import time

from redis.exceptions import RedisError

from api.context import ladder
from api.problems import Problem

log = logging.getLogger(__name__)


def count(key_id: int) -> None:
    """Count one request for the key; a 429 past `LADDER_RATE_LIMIT` requests this minute."""
    ctx = ladder()
    limit = ctx.settings.rate_limit
    if limit <= 0:
        return
    now = time.time()
    name = f"ladder:rate:{key_id}:{int(now // 60)}"
    try:
        pipe = ctx.redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, 61)
        used = int(pipe.execute()[0])
    except RedisError:
        log.warning("could not count a request against the rate limit", exc_info=True)
        return
    if used > limit:
        wait = max(1, math.ceil(60 - now % 60))
        raise Problem(
            429,
            f"this API key is over its limit of {limit} requests a minute (LADDER_RATE_LIMIT); "
            f"try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
