"""Turning a validated request into a committed, queued job: routing, then shared.jobs and the
producer; and cancelling one."""

from __future__ import annotations

from typing import Any

from flask import current_app, g

from api.auth import Caller
from api.context import ladder
from api.problems import Problem, invalid
from api.requests import SubmitRequest
from shared import jobs, kinds, producer, streams, webhooks, workers
from shared.kinds import FieldError, InvalidParams, Kind
from shared.models import Job, JobStatus
from shared.producer import BrokerUnavailable

QUOTA_RETRY_AFTER = 5
"""Seconds a client over its quota is told to wait: jobs end at no rate Ladder can promise."""
MAX_CALLBACK_HOSTS = 16
"""The most host names a batch's callback URLs may name between them: each is resolved while
the request waits, and a slow name takes seconds."""


def submit(caller: Caller, req: SubmitRequest, body: Any, key: str | None) -> Job:
    """Validate, route, commit and queue a job; the existing job for a repeated key and body."""
    new = prepare(caller, req)
    try:
        job, created = jobs.create(ladder().db, new, body, key, max_active(caller))
    except (InvalidParams, jobs.IdempotencyConflict, jobs.QuotaExceeded) as exc:
        raise _problem(exc) from None
    if created:
        send([job])
    return job


def submit_batch(
    caller: Caller, reqs: list[SubmitRequest], body: Any, key: str | None
) -> list[Job]:
    """`submit` for many: every job is validated before any is made, then one transaction and
    one Redis pipeline. A 422 names the job: `jobs[17].params.n`."""
    hosts = _callback_hosts(reqs)
    if len(hosts) > MAX_CALLBACK_HOSTS:
        message = (f"names {len(hosts)} hosts in its callback_url fields; a batch may name at "
                   f"most {MAX_CALLBACK_HOSTS} (send several batches)")  # fmt: skip
        raise invalid([FieldError("jobs", message)])
    batch, errors = [], []
    for i, req in enumerate(reqs):
        try:
            batch.append(prepare(caller, req))
        except Problem as exc:
            errors += [FieldError(f"jobs[{i}].{e.field}", e.message) for e in exc.errors]
    limit = max_active(caller)
    if limit and len(reqs) > limit:
        message = f"holds {len(reqs)} jobs; this key may have at most {limit} queued or running"
        errors.append(FieldError("jobs", message))
    if errors:
        raise invalid(errors)
    try:
        made, created = jobs.create_batch(ladder().db, batch, body, key, limit)
    except (InvalidParams, jobs.IdempotencyConflict, jobs.QuotaExceeded) as exc:
        raise _problem(exc) from None
    if created:
        send(made)
    return made


def prepare(caller: Caller, req: SubmitRequest) -> jobs.NewJob:
    """A submission checked against its kind and routed to a pool; a 422 problem if not."""
    ctx = ladder()
    ceiling = max_priority(caller)
    if ceiling is not None and req.priority > ceiling:
        source = "the key's own" if caller.max_priority is not None else "LADDER_MAX_PRIORITY"
        message = f"must be at most {ceiling} for this key ({source} ceiling)"
        raise invalid([FieldError("priority", message)])
    kind = kinds.get(req.kind)
    if kind is None:
        known = ", ".join(sorted(kinds.enabled()))
        raise invalid([FieldError("kind", f"unknown kind {req.kind!r}; known kinds: {known}")])
    try:
        params = kind.parse(req.params, ctx.settings)
    except InvalidParams as exc:
        raise invalid(exc.errors) from None
    queue = route(kind, req.device, params)
    refused = kind.check_device(params, queue, ctx.settings)
    errors = [FieldError(f"params.{e.field}", e.message) for e in refused]
    if req.callback_url is not None:
        errors += webhooks.check_url(req.callback_url, ctx.settings.webhook_allow_private, _resolve)
    if errors:
        raise invalid(errors)
    return jobs.NewJob(caller.key_id, kind.name, params.model_dump(mode="json"), req.priority,
                       req.device, queue, req.callback_url)  # fmt: skip


def _callback_hosts(reqs: list[SubmitRequest]) -> set[str]:
    """The host names (not addresses, which need no resolving) the callback URLs name."""
    hosts = set()
    for req in reqs:
        if req.callback_url is None:
            continue
        try:
            host = webhooks.parse(req.callback_url).host
        except webhooks.RefusedTarget:
            continue  # refused on its own, without resolving anything
        if webhooks.literal(host) is None:
            hosts.add(host.lower())
    return hosts


def _resolve(host: str, port: int) -> list[str]:
    """The app's resolver, asked once per host name in a request (whatever the port, which
    does not change the addresses): a batch may name one host a thousand times."""
    if "resolved" not in g:
        g.resolved = {}
    name = host.lower()
    if name not in g.resolved:
        try:
            g.resolved[name] = ladder().resolve(host, port)
        except OSError as exc:
            g.resolved[name] = exc
    found = g.resolved[name]
    if isinstance(found, OSError):
        raise found
    return list(found)


def max_active(caller: Caller) -> int:
    """The key's quota of queued and running jobs; 0 is none."""
    if caller.max_active_jobs is not None:
        return caller.max_active_jobs
    return ladder().settings.max_active_jobs_per_key


def max_priority(caller: Caller) -> int | None:
    """The highest priority the key may ask for; None for an admin key with no ceiling of its
    own (admins run the service, and may jump its queue)."""
    if caller.max_priority is not None:
        return caller.max_priority
    return None if caller.is_admin else ladder().settings.max_priority


def _problem(exc: InvalidParams | jobs.IdempotencyConflict | jobs.QuotaExceeded) -> Problem:
    if isinstance(exc, InvalidParams):
        return invalid(exc.errors)
    if isinstance(exc, jobs.QuotaExceeded):
        return Problem(
            429,
            f"this API key has {exc.active} queued or running jobs and may have at most "
            f"{exc.limit} (LADDER_MAX_ACTIVE_JOBS_PER_KEY, or the key's own limit); "
            "wait for some to end",
            headers={"Retry-After": str(QUOTA_RETRY_AFTER)},
        )
    return Problem(409, str(exc))


def route(kind: Kind, device: str, params: Any) -> str:
    """The queue for a job: `auto` takes the kind's first pool that has a live worker and can
    run these params (an fp32 generation goes to the CPU even when a GPU worker is up).

    A GPU asked for with no GPU worker online is refused now rather than left waiting forever.
    """
    if device != "auto" and device not in kind.pools:
        raise invalid([FieldError("device", f"{kind.name} runs on {', '.join(kind.pools)} only")])
    if len(kind.pools) == 1 and device == "auto":
        return kind.pools[0]  # nothing to choose: no need to ask Redis
    if "live_queues" not in g:  # asked once per request: a batch routes many jobs
        g.live_queues = workers.live_queues(ladder().redis)
    # A pool is live for this kind when a worker consumes the kind's queue there.
    live = {pool for pool in kind.pools if producer.route(kind.name, pool) in g.live_queues}
    if device == "auto":
        settings = ladder().settings
        able = [p for p in kind.pools if not kind.check_device(params, p, settings)]
        able = able or [kind.pools[0]]
        # With no able pool live, queue where waiting is fine: anywhere but an absent GPU.
        waiting = next((pool for pool in able if pool != "gpu"), able[0])
        chosen = next((pool for pool in able if pool in live), waiting)
    else:
        chosen = device
    if chosen == "gpu" and "gpu" not in live:
        field = "device" if device == "gpu" else "params"
        queue = producer.route(kind.name, "gpu")
        raise invalid([FieldError(field, f"no GPU worker serving {queue} is online; use cpu")])
    return chosen


def cancel(job: Job) -> bool:
    """Cancel a queued or running job; False when it had already ended.

    The row says cancelled first, and nothing can overwrite that; what follows only stops the
    work sooner, so a broker that is down is logged, not a failed cancel.
    """
    ctx = ladder()
    if not jobs.cancel(ctx.db, job.id):
        return False
    streams.publish_status(ctx.redis, job.id, JobStatus.CANCELLED)
    kind = kinds.get(job.kind)
    try:
        streams.request_cancel(ctx.redis, job.id)  # a kind that stops itself sees this
        if kind is None or not kind.stops_itself:
            ctx.producer.revoke(job.id)
    except Exception:
        current_app.logger.warning("could not signal the cancel of job %s", job.id, exc_info=True)
    return True


def send(made: list[Job]) -> None:
    """Queue committed jobs; if the broker refuses, undo the rows so that nothing half-exists."""
    ctx = ladder()
    try:
        if len(made) == 1:
            ctx.producer.send(made[0].id, made[0].kind, made[0].queue, made[0].priority)
        else:
            ctx.producer.send_many([(j.id, j.kind, j.queue, j.priority) for j in made])
    except BrokerUnavailable:
        jobs.discard(ctx.db, [job.id for job in made])
        raise Problem(
            503, "the broker is unavailable; try again shortly", headers={"Retry-After": "5"}
        ) from None
