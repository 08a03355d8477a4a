"""`/openapi.json`: the HTTP contract as OpenAPI 3.1, built from the same models that validate."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api.requests import SubmitRequest
from shared import kinds
from shared.models import JobStatus

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


def _json(
    description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


NULLABLE_STRING = {"type": ["string", "null"]}
TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}

JOB = {
    "type": "object",
    "required": [
        "id",
        "kind",
        "status",
        "params",
        "result",
        "error",
        "priority",
        "device",
        "queue",
        "attempts",
        "worker",
        "progress",
        "created_at",
        "started_at",
        "finished_at",
    ],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "kind": {"type": "string"},
        "status": {"type": "string", "enum": list(JobStatus)},
        "params": {
            "type": "object",
            "description": "The params as validated, defaults filled in.",
        },
        "result": {
            "type": ["object", "null"],
            "description": "The kind's result, once succeeded.",
        },
        "error": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                    },
                },
            ]
        },
        "priority": {"type": "integer", "minimum": 0, "maximum": 9},
        "device": {"type": "string", "enum": ["auto", "cpu", "gpu"]},
        "queue": {"type": "string"},
        "attempts": {"type": "integer", "minimum": 0},
        "worker": NULLABLE_STRING,
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": TIMESTAMP,
        "finished_at": TIMESTAMP,
    },
}

PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}

JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}
AUTH_PROBLEMS = {
    "401": _problem("No token, or an unknown or revoked one."),
    "429": _problem("The key is over its requests a minute; see Retry-After."),
}
UNAVAILABLE = {"503": _problem("The database or the broker is unavailable; see Retry-After.")}


def build_spec() -> dict[str, Any]:
    """The whole spec; params schemas come from the kinds' own models."""
    schemas: dict[str, Any] = {"Job": JOB, "Problem": PROBLEM}
    submit = SubmitRequest.model_json_schema(ref_template=REF)
    schemas.update(submit.pop("$defs", {}))
    schemas["SubmitRequest"] = submit
    params_names, by_kind = [], []
    for kind in kinds.registry().values():
        schema = kind.params_model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        name = schema.get("title", kind.params_model.__name__)
        schemas[name] = schema
        params_names.append(name)
        by_kind.append(
            {
                "required": ["kind", "params"],
                "properties": {"kind": {"const": kind.name}, "params": _ref(name)},
            }
        )
    submit["oneOf"] = by_kind  # each kind takes its own params
    schemas["JobList"] = {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref("Job")},
            "next_cursor": NULLABLE_STRING,
        },
    }
    schemas["KindList"] = {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "summary", "pools", "params_schema", "limits"],
                    "properties": {
                        "name": {"type": "string"},
                        "summary": {"type": "string"},
                        "pools": {"type": "array", "items": {"type": "string"}},
                        "params_schema": {
                            "type": "object",
                            "description": "A JSON Schema; each kind's is also a component: "
                            + ", ".join(params_names),
                        },
                        "limits": {"type": "object"},
                    },
                },
            }
        },
    }
    one_job = {
        "200": _json("The job.", _ref("Job")),
        "404": _problem("No such job, or it belongs to another key."),
        **AUTH_PROBLEMS,
        **UNAVAILABLE,
    }
    location = {"Location": {"schema": {"type": "string"}, "description": "The job's URL."}}
    paths: dict[str, Any] = {
        "/api/v1/jobs": {
            "post": {
                "operationId": "submitJob",
                "summary": "Submit a job; it is queued once the row is committed.",
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        "description": "Same key and body: the same job; another body: 409.",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SubmitRequest")}},
                },
                "responses": {
                    "202": _json(
                        "Accepted and queued (or the job this Idempotency-Key made).",
                        _ref("Job"),
                        location,
                    ),
                    "400": _problem("The body is not a JSON object."),
                    **AUTH_PROBLEMS,
                    "409": _problem("The Idempotency-Key was used with another body."),
                    "413": _problem("The body is larger than the limit."),
                    "415": _problem("The body is not application/json."),
                    "422": _problem(
                        "A field breaks the schema or a named limit; `errors` names each."
                    ),
                    **UNAVAILABLE,
                },
            },
            "get": {
                "operationId": "listJobs",
                "summary": "The caller's jobs (every job for an admin), newest first.",
                "security": [{"bearer": []}],
                "parameters": [
                    {"name": "kind", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(JobStatus)},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 100,
                            "default": 20,
                        },
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "next_cursor of the previous page.",
                    },
                ],
                "responses": {
                    "200": _json("A page of jobs.", _ref("JobList")),
                    **AUTH_PROBLEMS,
                    "422": _problem("A query parameter is invalid."),
                    **UNAVAILABLE,
                },
            },
        },
        "/api/v1/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "One job.",
                "security": [{"bearer": []}],
                "parameters": [JOB_ID],
                "responses": one_job,
            }
        },
        "/api/v1/jobs/{job_id}/cancel": {
            "post": {
                "operationId": "cancelJob",
                "summary": "Cancel a queued job, or stop a running one.",
                "security": [{"bearer": []}],
                "parameters": [JOB_ID],
                "responses": {
                    **one_job,
                    "200": _json("The job, now cancelled.", _ref("Job")),
                    "409": _problem("The job had already ended."),
                },
            }
        },
        "/api/v1/jobs/{job_id}/events": {
            "get": {
                "operationId": "followJob",
                "summary": "Server-sent events: `status` (the job) on each change, then `end`.",
                "security": [{"bearer": []}],
                "parameters": [JOB_ID],
                "responses": {
                    "200": {
                        "description": "An event stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **{k: v for k, v in one_job.items() if k != "200"},
                },
            }
        },
        "/api/v1/jobs/{job_id}/artifacts/{name}": {
            "get": {
                "operationId": "getArtifact",
                "summary": "A file the job made, such as value.txt.",
                "security": [{"bearer": []}],
                "parameters": [
                    JOB_ID,
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    **{k: v for k, v in one_job.items() if k != "200"},
                },
            }
        },
        "/api/v1/kinds": {
            "get": {
                "operationId": "listKinds",
                "summary": "The job kinds, each with the JSON Schema of its params and its limits.",
                "responses": {"200": _json("The kinds.", _ref("KindList"))},
            }
        },
        "/api/v1/workers": {
            "get": {
                "operationId": "listWorkers",
                "summary": "The worker registry (admin): each worker's pool, device, models, "
                "running jobs and tallies, online or offline.",
                "security": [{"bearer": []}],
                "responses": {
                    "200": _json(
                        "The workers.",
                        {
                            "type": "object",
                            "required": ["items"],
                            "properties": {"items": {"type": "array"}},
                        },
                    ),
                    **AUTH_PROBLEMS,
                    "403": _problem("Not an admin key."),
                    **UNAVAILABLE,
                },
            }
        },
        "/api/v1/stats": {
            "get": {
                "operationId": "stats",
                "summary": "Counts by status and kind, queue depths, throughput, p50/p95 "
                "durations and failures by code over 5 minutes and an hour (admin).",
                "security": [{"bearer": []}],
                "responses": {
                    "200": _json(
                        "The numbers.",
                        {"type": "object", "required": ["jobs", "queues", "windows"]},
                    ),
                    **AUTH_PROBLEMS,
                    "403": _problem("Not an admin key."),
                    **UNAVAILABLE,
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics, read from the database and Redis at each scrape.",
                "responses": {
                    "200": {
                        "description": "The text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/v1/models": {
            "get": {
                "operationId": "openaiModels",
                "summary": "OpenAI-compatible: the models `generate` can use.",
                "security": [{"bearer": []}],
                "responses": {
                    "200": _json(
                        "The models.",
                        {
                            "type": "object",
                            "required": ["object", "data"],
                            "properties": {"object": {"type": "string"}, "data": {"type": "array"}},
                        },
                    ),
                    **AUTH_PROBLEMS,
                },
            }
        },
        "/v1/chat/completions": {
            "post": {
                "operationId": "openaiChatCompletions",
                "summary": "OpenAI-compatible chat completion, run as a `generate` job "
                "(named in X-Ladder-Job); `stream: true` answers with OpenAI's chunks.",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["messages"],
                                "properties": {
                                    "model": {"type": "string"},
                                    "messages": {"type": "array", "minItems": 1},
                                    "max_tokens": {"type": "integer"},
                                    "max_completion_tokens": {"type": "integer"},
                                    "temperature": {"type": "number"},
                                    "top_p": {"type": "number"},
                                    "seed": {"type": "integer"},
                                    "stream": {"type": "boolean"},
                                    "stop": {
                                        "oneOf": [
                                            {"type": "string"},
                                            {"type": "array", "items": {"type": "string"}},
                                        ]
                                    },
                                    "n": {"type": "integer", "enum": [1]},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "A chat.completion, or chat.completion.chunk events.",
                        "content": {
                            "application/json": {"schema": {"type": "object"}},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    "400": _problem("The body is not a JSON object."),
                    **AUTH_PROBLEMS,
                    "413": _problem("The body is larger than the limit."),
                    "415": _problem("The body is not application/json."),
                    "422": _problem("A field breaks the schema or a named limit."),
                    "502": _problem("The job failed."),
                    "504": _problem("The job did not finish within its time limit."),
                    **UNAVAILABLE,
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness.",
                "responses": {
                    "200": _json(
                        "Alive.",
                        {
                            "type": "object",
                            "properties": {"status": {"type": "string"}},
                        },
                    )
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: the database and the broker answer.",
                "responses": {
                    "200": _json(
                        "Ready.",
                        {
                            "type": "object",
                            "required": ["status", "checks"],
                            "properties": {
                                "status": {"type": "string"},
                                "checks": {"type": "object"},
                            },
                        },
                    ),
                    "503": _problem("A dependency is down; `checks` says which."),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {"200": _json("The OpenAPI document.", {"type": "object"})},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ladder",
            "version": "1.0.0",
            "description": "A job queue for compute work on CPUs and GPUs. Errors: RFC 9457.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@bp.get("/openapi.json")
def spec() -> dict[str, Any]:
    return build_spec()
