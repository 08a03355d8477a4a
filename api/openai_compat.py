"""An OpenAI-compatible front over `generate` jobs: GET /v1/models, POST /v1/chat/completions.

Each completion is an ordinary job (visible at /api/v1/jobs/{id}, named in the X-Ladder-Job
header), so existing OpenAI clients get Ladder's queueing, planning and streaming as they are.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, stream_with_context
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from api import submission
from api.auth import authenticate
from api.context import ladder
from api.events import follow, wait_for_end
from api.problems import Problem, invalid
from api.requests import SubmitRequest, json_body
from api.waiting import Slot, watching
from shared import jobs, model_registry, producer
from shared.kinds import FieldError
from shared.kinds.generate import describe_entry, is_generative
from shared.models import Job, JobStatus

bp = Blueprint("openai", __name__, url_prefix="/v1")


class ChatRequest(BaseModel):
    """The subset of OpenAI's chat completion request that Ladder honours; `n` must be 1."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: StrictStr | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: StrictInt | None = None
    max_completion_tokens: StrictInt | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    stream: StrictBool = False
    n: StrictInt = Field(default=1, ge=1, le=1)


@bp.get("/models")
def models() -> dict[str, Any]:
    authenticate(ladder().db)
    settings = ladder().settings
    data = []
    for name in model_registry.available(settings.models_dir):
        try:
            entry = model_registry.resolve(name, settings.models_dir)
        except model_registry.UnknownModel:  # a file that cannot be served (a cut-short GGUF)
            continue
        if is_generative(entry):
            data.append(
                {"object": "model", "created": 0, "owned_by": "ladder", **describe_entry(entry)}
            )
    return {"object": "list", "data": data}


@bp.post("/chat/completions")
def chat_completions() -> Response:
    caller = authenticate(ladder().db)
    try:
        chat = ChatRequest.model_validate(json_body())
    except ValidationError as exc:
        raise invalid(
            [FieldError(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        ) from None
    params: dict[str, Any] = {"messages": chat.messages}
    for name, value in [
        ("model", chat.model),
        ("max_new_tokens", chat.max_completion_tokens or chat.max_tokens),
        ("temperature", chat.temperature),
        ("top_p", chat.top_p),
        ("seed", chat.seed),
        ("stop", [chat.stop] if isinstance(chat.stop, str) else chat.stop),
    ]:
        if value is not None:
            params[name] = value
    # Chats have no priority field: the default one, under the key's ceiling.
    ceiling = submission.max_priority(caller)
    priority = 5 if ceiling is None else min(5, ceiling)
    request = SubmitRequest(kind="generate", params=params, priority=priority, device="auto")
    settings = ladder().settings
    # The longest this request may wait: the job's own time limit, or a stream's longest life.
    seconds = max(producer.time_limit(settings, "generate"), settings.max_stream_seconds)
    held = Slot(caller.key_id)  # taken first: a key at its limit makes no job
    held.take(seconds)
    try:
        job = submission.submit(caller, request, request.model_dump(), None)
    except BaseException:
        held.release()
        raise
    headers = {"X-Ladder-Job": job.id}
    if chat.stream:
        response = Response(
            stream_with_context(_chunks(job, time.monotonic() + seconds)),
            mimetype="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache"},
        )
        response.call_on_close(held.release)
        return response
    done = None
    try:
        with watching() as hangup:
            done = wait_for_end(job.id, seconds)
    finally:
        held.release()
    if hangup.gone:
        _abandon(job)
        return Response(status=499)  # nginx's "client closed request": nobody reads it
    if done is None or not JobStatus(done.status).finished:
        raise Problem(504, f"job {job.id} did not finish in {seconds} s; it goes on")
    return Response(json.dumps(_completion(done)), mimetype="application/json", headers=headers)


def _abandon(job: Job) -> None:
    """The client hung up before its completion ended: nobody will read it, so stop it (as
    vLLM and TGI do)."""
    current = jobs.find(ladder().db, job.id)
    if current is not None and not JobStatus(current.status).finished:
        submission.cancel(current)


def _completion(job: Job) -> dict[str, Any]:
    if job.status != JobStatus.SUCCEEDED or job.result is None:
        error = job.error or {"code": job.status, "message": f"the job ended {job.status}"}
        raise Problem(502 if job.status == JobStatus.FAILED else 409, error["message"])
    result = job.result
    return {
        "id": f"chatcmpl-{job.id}",
        "object": "chat.completion",
        "created": int(job.created_at.timestamp()),
        "model": result["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result["text"]},
                "finish_reason": _reason(result["finish_reason"]),
            }
        ],
        "usage": {
            "prompt_tokens": result["tokens"]["prompt"],
            "completion_tokens": result["tokens"]["completion"],
            "total_tokens": result["tokens"]["prompt"] + result["tokens"]["completion"],
        },
    }


def _reason(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def _chunks(job: Job, until: float) -> Iterator[str]:
    """OpenAI's streaming format: role first, then content deltas, then the finish reason.

    A client that leaves before the end cancels the job, however its leaving is noticed."""
    head = {"id": f"chatcmpl-{job.id}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": job.params.get("model") or "default"}  # fmt: skip

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        body = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n"

    reason, status, seen_out = "stop", None, False
    try:
        with watching() as hangup:
            yield chunk({"role": "assistant", "content": ""})
            for event in follow(job.id, None, until):
                if hangup.gone:
                    break
                if event is None:
                    yield ": keep-alive\n\n"
                elif event.event == "token":
                    yield chunk({"content": event.data["text"]})
                elif event.event == "end" and "finish_reason" in event.data:
                    reason = _reason(event.data["finish_reason"])
                elif event.event == "status":
                    status = event.data["status"]
            else:
                seen_out = True
    finally:
        if not seen_out:  # gone (noticed by the watcher, a failed write, or a close)
            _abandon(job)
    if not seen_out:
        return
    if status != JobStatus.SUCCEEDED:
        ended = status in (JobStatus.FAILED, JobStatus.CANCELLED)
        message = f"the job ended {status}" if ended else f"job {job.id} did not finish in time"
        error = {"message": message, "type": "server_error", "code": status}
        yield f"data: {json.dumps({'error': error})}\n\n"
    else:
        yield chunk({}, reason)
    yield "data: [DONE]\n\n"
