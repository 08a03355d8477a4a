"""`/openapi.json`: the HTTP contract as OpenAPI 3.1, built from the models and constants the
code itself validates and answers with, so that no limit is written here a second time."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api import schemas
from api.context import ladder
from api.info import API_VERSION
from api.jobs import MAX_WAIT_SECONDS, PAGE_SIZE
from api.openai_compat import ChatRequest
from api.requests import MAX_BATCH, BatchRequest, SubmitRequest
from shared import kinds
from shared.config import Settings
from shared.jobs import MAX_IDEMPOTENCY_KEY
from shared.models import JobStatus

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"

"""`limit`'s default in `api.jobs.list_jobs`, which passes it as a bare number (a test checks)."""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def components() -> dict[str, Any]:
    """Every model's JSON Schema in one namespace, so that two models of one name cannot
    overwrite each other; SubmitRequest ties each kind to its own params."""
    params = {kind.name: kind.params_model for kind in kinds.enabled().values()}
    models: list[type[BaseModel]] = [
        *schemas.MODELS,
        SubmitRequest,
        BatchRequest,
        ChatRequest,
        *params.values(),
    ]
    refs, document = models_json_schema(
        [(model, "validation") for model in models], ref_template=REF
    )
    defs: dict[str, Any] = document["$defs"]
    defs["SubmitRequest"]["oneOf"] = [
        {
            "required": ["kind", "params"],
            "properties": {"kind": {"const": name}, "params": refs[(model, "validation")]},
        }
        for name, model in params.items()
    ]
    return defs


def _json(
    description: str, schema: str | dict[str, Any], headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON response; `schema` is a component's name or a schema."""
    body = _ref(schema) if isinstance(schema, str) else schema
    response = {"description": description, "content": {"application/json": {"schema": body}}}
    return {**response, "headers": headers} if headers else response


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


def _media(description: str, media_type: str, **schema: Any) -> dict[str, Any]:
    """A response that is not JSON: an event stream, a file, Prometheus' text."""
    return {"description": description, "content": {media_type: {"schema": schema}}}


def _param(name: str, where: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": where, "schema": schema}
    if where == "path":
        param["required"] = True
    if description:
        param["description"] = description
    return param


def _op(
    operation_id: str, summary: str, responses: dict[str, Any], *, auth: bool = True, **more: Any
) -> dict[str, Any]:
    """An operation; one that takes a token may also answer 401, 429 and 503."""
    if not auth:
        return {"operationId": operation_id, "summary": summary, **more, "responses": responses}
    return {
        "operationId": operation_id,
        "summary": summary,
        "security": [{"bearer": []}],
        **more,
        "responses": {
            **responses,
            "401": _problem("No token, or an unknown or revoked one."),
            "429": _problem(
                "The key is over its requests a minute, or the client's address past its "
                "failed authentications (LADDER_AUTH_FAILURES_PER_MINUTE); see Retry-After."
            ),
            "503": _problem("The database or the broker is unavailable; see Retry-After."),
        },
    }


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


BAD_BODY = {
    "400": _problem("The body is not a JSON object."),
    "413": _problem("The body is larger than the limit."),
    "415": _problem("The body is not application/json."),
}
NO_JOB = {"404": _problem("No such job, or it belongs to another key.")}
ADMIN_ONLY = {"403": _problem("Not an admin key.")}
JOB_ID = _param("job_id", "path", {"type": "string"})


def paths(settings: Settings) -> dict[str, Any]:
    """Every route of the JSON API, with its parameters and answers."""
    idempotency_key = {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY}
    page = {"type": "integer", "minimum": 1, "maximum": settings.page_limit, "default": PAGE_SIZE}
    location = {"Location": {"schema": {"type": "string"}, "description": "The job's URL."}}
    return {
        "/api/v1/jobs": {
            "post": _op(
                "submitJob",
                "Submit a job; it is queued once the row is committed.",
                {
                    "202": _json(
                        "Accepted and queued (or the job this Idempotency-Key made).",
                        "Job",
                        headers=location,
                    ),
                    **BAD_BODY,
                    "409": _problem("The Idempotency-Key was used with another body."),
                    "422": _problem(
                        "A field breaks the schema or a named limit; `errors` names each."
                    ),
                },
                parameters=[
                    _param(
                        "Idempotency-Key",
                        "header",
                        idempotency_key,
                        "Same key and body: the same job; another body: 409.",
                    )
                ],
                requestBody=_body("SubmitRequest"),
            ),
            "get": _op(
                "listJobs",
                "The caller's jobs (every job for an admin), newest first.",
                {
                    "200": _json("A page of jobs.", "JobList"),
                    "422": _problem("A query parameter is invalid."),
                },
                parameters=[
                    _param("kind", "query", {"type": "string"}),
                    _param("status", "query", {"type": "string", "enum": list(JobStatus)}),
                    _param("limit", "query", page),
                    _param(
                        "cursor", "query", {"type": "string"}, "next_cursor of the previous page."
                    ),
                ],
            ),
        },
        "/api/v1/jobs/batch": {
            "post": _op(
                "submitJobs",
                f"Submit up to {MAX_BATCH} jobs: all are validated before any is made, then "
                "they are made in one transaction and queued together.",
                {
                    "202": _json("Accepted and queued, in order.", "JobItems"),
                    **BAD_BODY,
                    "409": _problem("The Idempotency-Key was used with another body."),
                    "422": _problem("A job is invalid; `errors` names it: `jobs[17].params.n`."),
                },
                parameters=[
                    _param(
                        "Idempotency-Key",
                        "header",
                        idempotency_key,
                        "Same key and body: the same jobs; another body: 409.",
                    )
                ],
                requestBody=_body("BatchRequest"),
            ),
        },
        "/api/v1/jobs/{job_id}": {
            "get": _op(
                "getJob",
                "One job; with `wait`, a long poll that answers when the job ends.",
                {
                    "200": _json("The job.", "Job"),
                    **NO_JOB,
                    "422": _problem("`wait` is out of range."),
                    "429": _problem("The key holds all its streams and waits open."),
                },
                parameters=[
                    JOB_ID,
                    _param(
                        "wait",
                        "query",
                        {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
                        "Seconds to wait for the job to end before answering.",
                    ),
                ],
            )
        },
        "/api/v1/jobs/{job_id}/cancel": {
            "post": _op(
                "cancelJob",
                "Cancel a queued job, or stop a running one.",
                {
                    "200": _json("The job, now cancelled.", "Job"),
                    **NO_JOB,
                    "409": _problem("The job had already ended."),
                },
                parameters=[JOB_ID],
            )
        },
        "/api/v1/jobs/{job_id}/events": {
            "get": _op(
                "followJob",
                "Server-sent events: `status` (the job) on each change, the job's own events "
                "(`progress` with its fraction done and stage, `token`, …), then `end`; "
                "`reconnect` when the stream reached its longest life.",
                {
                    "200": _media("An event stream.", "text/event-stream", type="string"),
                    **NO_JOB,
                    "429": _problem("The key holds all its streams and waits open."),
                },
                parameters=[JOB_ID],
            )
        },
        "/api/v1/jobs/{job_id}/artifacts/{name}": {
            "get": _op(
                "getArtifact",
                "A file the job made, such as value.txt or an attention job's explorer.html; "
                "served as an attachment under CSP sandbox.",
                {
                    "200": _media(
                        "The file.", "application/octet-stream", type="string", format="binary"
                    ),
                    **NO_JOB,
                },
                parameters=[JOB_ID, _param("name", "path", {"type": "string"})],
            )
        },
        "/api/v1/kinds": {
            "get": _op(
                "listKinds",
                "The job kinds, each with the JSON Schema of its params and its limits.",
                {"200": _json("The kinds.", "KindList")},
                auth=False,
            )
        },
        "/api/v1/info": {
            "get": _op(
                "info",
                "How long ended jobs are kept before they are purged (then 404), and the "
                "limits on the calling key.",
                {"200": _json("The policy and the limits.", "Info")},
            )
        },
        "/api/v1/webhook-secret": {
            "get": _op(
                "webhookSecret",
                "The secret that signs the webhooks of the calling key's jobs (a new one with "
                "each `keys rotate`).",
                {"200": _json("The secret.", "WebhookSecret")},
            )
        },
        "/api/v1/workers": {
            "get": _op(
                "listWorkers",
                "The worker registry (admin): each worker's pool, device, models, "
                "running jobs and tallies, online or offline.",
                {"200": _json("The workers.", "WorkerList"), **ADMIN_ONLY},
            )
        },
        "/api/v1/stats": {
            "get": _op(
                "stats",
                "Counts by status and kind, queue depths, throughput, p50/p95 "
                "durations and failures by code over 5 minutes and an hour (admin).",
                {"200": _json("The numbers.", "Stats"), **ADMIN_ONLY},
            )
        },
        "/metrics": {
            "get": _op(
                "metrics",
                "Prometheus metrics from the database and Redis, rendered at most every 5 s. "
                "With LADDER_METRICS_TOKEN set it wants that token as a bearer token; unset, "
                "it is open.",
                {
                    "200": _media("The text exposition format.", "text/plain", type="string"),
                    "401": _problem("LADDER_METRICS_TOKEN is set and was not sent."),
                    "429": _problem("The address is past its failed authentications."),
                },
                auth=False,
            )
        },
        "/v1/models": {
            "get": _op(
                "openaiModels",
                "OpenAI-compatible: the models `generate` can use.",
                {"200": _json("The models.", "ModelList")},
            )
        },
        "/v1/chat/completions": {
            "post": _op(
                "openaiChatCompletions",
                "OpenAI-compatible chat completion, run as a `generate` job "
                "(named in X-Ladder-Job); `stream: true` answers with OpenAI's chunks.",
                {
                    "200": {
                        "description": "A chat.completion, or chat.completion.chunk events.",
                        "content": {
                            "application/json": {"schema": {"type": "object"}},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **BAD_BODY,
                    "422": _problem("A field breaks the schema or a named limit."),
                    "502": _problem("The job failed."),
                    "504": _problem("The job did not finish within its time limit."),
                },
                requestBody=_body("ChatRequest"),
            )
        },
        "/healthz": {
            "get": _op("healthz", "Liveness.", {"200": _json("Alive.", "Health")}, auth=False)
        },
        "/readyz": {
            "get": _op(
                "readyz",
                "Readiness: the database and the broker answer.",
                {
                    "200": _json("Ready.", "Readiness"),
                    "503": _problem("A dependency is down; `checks` says which."),
                },
                auth=False,
            )
        },
        "/openapi.json": {
            "get": _op(
                "openapi",
                "This document.",
                {"200": _json("The OpenAPI document.", {"type": "object"})},
                auth=False,
            )
        },
    }


def build_spec(settings: Settings) -> dict[str, Any]:
    """The whole document, for an app that runs with these settings."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ladder",
            "version": API_VERSION,
            "description": "A job queue for compute work on CPUs and GPUs. Errors: RFC 9457.",
        },
        "paths": paths(settings),
        "components": {
            "schemas": components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@bp.get("/openapi.json")
def spec() -> dict[str, Any]:
    return build_spec(ladder().settings)
