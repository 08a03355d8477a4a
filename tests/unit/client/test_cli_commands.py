"""The `ladder` command against a handler that plays the API: what it prints, and the exit
code each outcome maps to (0 succeeded, 1 failed job, 2 usage or 4xx, 3 unreachable, 4 timeout)."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from rich.console import Console

from ladder_client import Client, JobError, LadderConnectionError, LadderError, cli, output
from ladder_client.chat import Conversation, converse

JobDoc = Callable[..., dict[str, Any]]


class FakeLadder:
    """Jobs that end as `outcome` says; n < 0 is a 422, as the real API answers."""

    def __init__(self, job_doc: JobDoc, outcome: str = "succeeded") -> None:
        self.job_doc, self.outcome = job_doc, outcome
        self.streams_refused = False
        self.sent: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/api/v1/jobs":
            body = json.loads(request.content)
            self.sent.append(body)
            if body["params"].get("n", 0) < 0:
                problem = {
                    "title": "Unprocessable Entity",
                    "status": 422,
                    "detail": "bad",
                    "errors": [{"field": "params.n", "message": "must be at least 0"}],
                }
                return httpx.Response(422, json=problem)
            return httpx.Response(202, json=self.job_doc("j1", params=body["params"]))
        if path.endswith("/events") and self.streams_refused:
            return httpx.Response(429, json={"title": "Too Many Requests"})
        if path.endswith("/events"):
            text = (
                f"event: status\ndata: {json.dumps(self.job_doc('j1', status='running'))}\n\n"
                'id: 1-1\nevent: progress\ndata: {"progress": 0.5}\n\n'
                'id: 1-2\nevent: token\ndata: {"text": "Hello"}\n\n'
                'id: 1-3\nevent: token\ndata: {"text": " world"}\n\n'
                f'event: end\ndata: {{"status": "{self.outcome}"}}\n\n'
            )
            return httpx.Response(200, text=text, headers={"Content-Type": "text/event-stream"})
        if path == "/api/v1/jobs":
            cursor = request.url.params.get("cursor")
            start = int(cursor or 0)
            size = int(request.url.params["limit"])
            items = [self.job_doc(f"j{i}", summary=str(i)) for i in range(start, start + size)]
            return httpx.Response(200, json={"items": items, "next_cursor": str(start + size)})
        if path == "/api/v1/jobs/gone":
            return httpx.Response(404, json={"title": "Not Found", "detail": "no job gone"})
        error = {"code": "internal", "message": "it broke"} if self.outcome == "failed" else None
        return httpx.Response(200, json=self.job_doc("j1", status=self.outcome, error=error))


@pytest.fixture
def ladder(monkeypatch: pytest.MonkeyPatch, job_doc: JobDoc) -> FakeLadder:
    fake = FakeLadder(job_doc)
    monkeypatch.setattr(
        cli, "Client", lambda url, token: Client(url, token, transport=httpx.MockTransport(fake))
    )
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent")
    monkeypatch.setattr("ladder_client.client.time.sleep", lambda seconds: None)
    return fake


def test_errors_map_to_exit_codes() -> None:
    assert cli.exit_code(LadderError("x", status=404, title="Not Found")) == 2
    assert cli.exit_code(LadderError("x", status=422, title="Unprocessable Entity")) == 2
    assert cli.exit_code(LadderError("x", status=503, title="Service Unavailable")) == 3
    assert cli.exit_code(LadderConnectionError("refused")) == 3
    assert cli.exit_code(JobError("the job ended failed")) == 1


def test_key_value_words_are_json_where_they_parse() -> None:
    words = ["n=10", "steps=[1, 3]", "prompt=Once upon", "stop=true", "eq=a=b", "empty="]
    assert cli.parse_assignments(words) == {
        "n": 10,
        "steps": [1, 3],
        "prompt": "Once upon",
        "stop": True,
        "eq": "a=b",
        "empty": "",
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        cli.parse_assignments(["n"])


def test_submit_and_wait_prints_the_job_as_json_when_piped(
    ladder: FakeLadder, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "submit",
            "stairs",
            "n=10",
            "--params-json",
            '{"steps": [1, 2]}',
            "--priority",
            "3",
            "--wait",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"
    assert ladder.sent == [{"kind": "stairs", "params": {"steps": [1, 2], "n": 10}, "priority": 3}]


def test_a_failed_job_exits_1(ladder: FakeLadder, capsys: pytest.CaptureFixture[str]) -> None:
    ladder.outcome = "failed"
    assert cli.main(["wait", "j1"]) == 1
    capsys.readouterr()
    assert cli.main(["get", "j1", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "internal"
    ladder.outcome = "cancelled"
    assert cli.main(["stream", "j1"]) == 1


def test_a_4xx_exits_2_and_names_the_field(
    ladder: FakeLadder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["submit", "stairs", "n=-1"]) == 2
    err = capsys.readouterr().err
    assert "422 Unprocessable Entity" in err and "params.n: must be at least 0" in err
    assert cli.main(["get", "gone"]) == 2
    assert "404" in capsys.readouterr().err


def test_bad_usage_exits_2(ladder: FakeLadder, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["submit", "stairs", "n"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        cli.main(["frobnicate"])
    assert usage.value.code == 2


def test_an_unreachable_service_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("ladder_client.client.time.sleep", lambda seconds: None)
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert cli.main(["--url", f"http://127.0.0.1:{port}", "--token", "t", "get", "j1"]) == 3
    assert f"cannot reach Ladder at http://127.0.0.1:{port}" in capsys.readouterr().err
    assert cli.main(["get", "j1", "--url", f"http://127.0.0.1:{port}", "--json"]) == 3
    assert f"http://127.0.0.1:{port}" in capsys.readouterr().err


def test_a_bad_config_file_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ladder").mkdir()
    (tmp_path / "ladder" / "config.toml").write_text("token = [")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("LADDER_TOKEN", raising=False)
    assert cli.main(["get", "j1"]) == 2
    assert "config.toml" in capsys.readouterr().err


def test_stream_prints_the_tokens(ladder: FakeLadder, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["stream", "j1"]) == 0
    assert capsys.readouterr().out == "Hello world"
    assert cli.main(["stream", "j1", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines] == ["status", "progress", "token", "token", "end"]


def test_ls_stops_at_its_limit_across_pages(
    ladder: FakeLadder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["ls", "--limit", "150"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [job["id"] for job in listed] == [f"j{i}" for i in range(150)]


def test_a_terminal_gets_tables(
    ladder: FakeLadder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: stdout counts as a terminal
    monkeypatch.setenv("COLUMNS", "120")
    assert cli.main(["ls", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "summary" in out and "j2" in out and "{" not in out


def test_info_at_a_terminal_reads_as_dotted_rows() -> None:
    console = Console(file=io.StringIO(), width=100, no_color=True)
    info = {
        "version": "1.0.0",
        "retention": {"failed": {"seconds": 2592000, "duration": "30d"}},
        "limits": {"max_batch": 1000},
    }
    output.show_mapping(info, console)
    rows = [line.split() for line in console.file.getvalue().splitlines()]
    assert rows == [["version", "1.0.0"], ["retention.failed", "30d"], ["limits.max_batch", "1000"]]


def test_wait_polls_the_job_when_its_stream_is_refused(
    ladder: FakeLadder, capsys: pytest.CaptureFixture[str]
) -> None:
    ladder.streams_refused = True  # the key holds all of its streams: 429
    assert cli.main(["wait", "j1"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"


def test_chat_keeps_the_history_and_survives_an_error_at_a_terminal() -> None:
    sent: list[list[dict[str, Any]]] = []

    class Chatty:
        token = "t"

        def chat(self, messages: list[dict[str, Any]], **options: Any) -> Iterator[str]:
            sent.append([dict(m) for m in messages])
            if messages[-1]["content"] == "boom":
                raise LadderError("bad model", status=422, title="Unprocessable Entity")
            yield from ["A", "nswer"]

    lines = iter(["Hi", "boom", "/reset", "Again", "/exit"])
    out, errors = io.StringIO(), Console(file=io.StringIO())
    code = converse(
        Chatty(),
        {},
        Conversation("Be brief."),
        out,
        ask=lambda prompt: next(lines),
        errors=errors,
        interactive=True,
    )
    assert code == 0 and out.getvalue() == "Answer\nAnswer\n"
    assert [m["role"] for m in sent[1]] == ["system", "user", "assistant", "user"]
    assert sent[2] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Again"},
    ]
    assert "422" in errors.file.getvalue()


def test_an_artifact_that_cannot_be_written_exits_2_without_a_traceback(
    ladder: FakeLadder, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "value.txt"
    assert cli.main(["artifact", "j1", "value.txt", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {target}: No such file or directory" in err
    assert "Traceback" not in err and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8000", "localhost:8000", "ladder.example.com", "http://[::1", "ftp://x"]
)
def test_a_url_ladder_cannot_be_reached_at_is_bad_usage(
    url: str, ladder: FakeLadder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--url", url, "--token", "t", "get", "j1"]) == 2
    assert "http:// or https://" in capsys.readouterr().err
    assert cli.main(["get", "j1", "--url", url]) == 2


def test_a_token_that_cannot_be_sent_is_bad_usage(
    ladder: FakeLadder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--token", "tökén", "get", "j1"]) == 2
    assert "printable ASCII" in capsys.readouterr().err


def test_an_invalid_url_met_late_is_bad_usage_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(run: cli.Run) -> int:
        raise httpx.InvalidURL("Invalid port: ':1'")

    monkeypatch.setattr(cli, "get", refuse)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent")
    assert cli.main(["--url", "http://127.0.0.1:1", "get", "j1"]) == 2
    assert "Invalid port" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["ls", "--limit", "-1"],
        ["ls", "--limit", "many"],
        ["wait", "j1", "--timeout", "-5"],
        ["submit", "stairs", "--wait", "--timeout", "nan"],
    ],
)
def test_a_bad_number_is_a_usage_error(
    argv: list[str], ladder: FakeLadder, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as usage:
        cli.main(argv)
    assert usage.value.code == 2
    assert "usage: ladder" in capsys.readouterr().err
    assert ladder.sent == []


def test_ls_limit_0_lists_every_page(
    ladder: FakeLadder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served = iter(range(3))
    real = FakeLadder.__call__

    def pages(self: FakeLadder, request: httpx.Request) -> httpx.Response:
        response = real(self, request)
        if request.url.path == "/api/v1/jobs" and next(served, None) is None:
            return httpx.Response(200, json={"items": [], "next_cursor": None})
        return response

    monkeypatch.setattr(FakeLadder, "__call__", pages)
    assert cli.main(["ls", "--limit", "0"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3 * cli.PAGE_MAX


def test_a_cancel_whose_answer_a_gateway_lost_exits_0(
    ladder: FakeLadder,
    job_doc: JobDoc,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    posts: list[str] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=job_doc("j1", status="cancelled"))
        posts.append(request.url.path)
        if len(posts) == 1:
            return httpx.Response(502, text="Bad Gateway")  # the cancel went through
        return httpx.Response(409, json={"title": "Conflict", "detail": "ended as cancelled"})

    monkeypatch.setattr(
        cli, "Client", lambda url, token: Client(url, token, transport=httpx.MockTransport(gateway))
    )
    assert cli.main(["cancel", "j1"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelled"
    assert len(posts) == 2


def test_a_401_says_why_the_config_file_s_token_was_not_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ladder").mkdir()
    (tmp_path / "ladder" / "config.toml").write_text(
        'url = "https://ladder.example.com"\ntoken = "secret-token"\n'
    )
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("LADDER_TOKEN", raising=False)
    monkeypatch.delenv("LADDER_URL", raising=False)
    seen: list[str | None] = []

    def anyone(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(401, json={"title": "Unauthorized", "detail": "no token"})

    monkeypatch.setattr(
        cli, "Client", lambda url, token: Client(url, token, transport=httpx.MockTransport(anyone))
    )
    assert cli.main(["--url", "https://elsewhere.example.net", "get", "j1"]) == 2
    assert seen == [None]
    err = capsys.readouterr().err
    assert "the config file's token is for https://ladder.example.com" in err
    assert "secret-token" not in err
