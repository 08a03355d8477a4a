"""`generate` jobs on a GGUF model through a real worker (llama.cpp): streamed tokens, cancel,
the OpenAI front, and a file cut short after its job was queued."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from shared import streams
from shared.kinds.generate import gguf_engine_installed
from tests.processes import Stack
from tests.support import need, wait_for

MODEL = "smollm2-gguf"


@pytest.fixture(autouse=True)
def built() -> None:
    if not gguf_engine_installed():
        need("llama.cpp", "`make gguf` builds it into .venv (CI does)")


def token_texts(stack: Stack, job_id: str) -> list[str]:
    redis = streams.connect(stack.settings.broker_url)
    return [d["text"] for _, e, d in streams.read(redis, job_id, "0", None) if e == "token"]


def test_tokens_stream_and_add_up_to_the_text(stack: Stack) -> None:
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_new_tokens": 16}
    done = stack.client.wait(stack.client.submit(chat, kind="generate")["id"])
    assert done["status"] == "succeeded"
    assert "".join(token_texts(stack, done["id"])) == done["result"]["text"]
    assert done["result"]["plan"]["engine"] == "llama.cpp"
    assert done["result"]["plan"]["quantization"] == "Q4_1"


def test_cancel_stops_it_and_the_worker_goes_on(stack: Stack) -> None:
    job = stack.client.submit(
        {"model": MODEL, "prompt": "Go on", "max_new_tokens": 2048}, kind="generate"
    )
    wait_for(lambda: bool(token_texts(stack, job["id"])), "a first token", 60)
    assert stack.client.call("POST", f"/api/v1/jobs/{job['id']}/cancel").status == 200
    wait_for(lambda: stack.client.job(job["id"])["result"] is not None, "the worker stopping", 30)
    result = stack.client.job(job["id"])["result"]
    assert result["finish_reason"] == "cancelled" and result["tokens"]["completion"] < 2048
    after = stack.client.submit({"model": MODEL, "prompt": "Again", "max_new_tokens": 4},
                                kind="generate")  # fmt: skip
    assert stack.client.wait(after["id"])["status"] == "succeeded"


def test_the_openai_client_streams_a_chat(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.client.token,
                           max_retries=0)  # fmt: skip
    assert MODEL in [m.id for m in client.models.list()]
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a color."}], max_tokens=20,
        stream=True, seed=3, temperature=0.7,
    )  # fmt: skip
    pieces, ids, reasons = [], set(), []
    for chunk in stream:
        ids.add(chunk.id)
        pieces.append(chunk.choices[0].delta.content or "")
        reasons.append(chunk.choices[0].finish_reason)
    (completion_id,) = ids
    assert reasons[-1] in ("stop", "length")
    result = stack.client.job(completion_id.removeprefix("chatcmpl-"))["result"]
    assert "".join(pieces) == result["text"] and result["model"] == MODEL


@pytest.fixture
def doomed(stack: Stack) -> Iterator[Path]:
    """A second copy of the GGUF model, for a test to cut short."""
    folder = stack.settings.models_dir / "doomed-gguf"
    shutil.copytree(stack.settings.models_dir / MODEL, folder)
    yield folder
    shutil.rmtree(folder)


def test_a_file_cut_after_its_job_was_queued_fails_the_job_not_the_worker(
    stack: Stack, doomed: Path
) -> None:
    pid = stack.generator.process.pid
    with stack.generator.paused():
        job = stack.client.submit({"model": doomed.name, "prompt": "x"}, kind="generate")
        (gguf,) = doomed.glob("*.gguf")
        with gguf.open("r+b") as f:
            f.truncate(gguf.stat().st_size // 3)  # a new size: the header is read again
    failed = stack.client.wait(job["id"])
    assert failed["status"] == "failed"
    assert "the file is truncated" in failed["error"]["message"]
    after = stack.client.submit({"model": MODEL, "prompt": "x", "max_new_tokens": 2},
                                kind="generate")  # fmt: skip
    assert stack.client.wait(after["id"])["status"] == "succeeded"
    assert stack.generator.process.pid == pid and stack.generator.process.poll() is None
