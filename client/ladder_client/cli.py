"""The `ladder` command: Ladder's jobs from a shell.

    ladder submit stairs n=10 --wait
    ladder stream $(ladder submit generate prompt='Once upon' --json | jq -r .id)
    ladder ls --status failed

Exit codes (README's table says the same): 0 done (a job waited on or shown did not fail), 1 the
job failed or was cancelled, 2 bad usage (arguments, URL, token, config file, a local file that
cannot be read or written) or a 4xx answer, 3 Ladder cannot be reached or answered 5xx, 4 the
job had not ended when the command stopped waiting (`--timeout`), 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

from ladder_client.chat import Conversation, converse
from ladder_client.client import Client
from ladder_client.config import Config, ConfigError, resolve
from ladder_client.errors import JobError, LadderConnectionError, LadderError
from ladder_client.models import Job
from ladder_client.output import dump, show_error, show_job, show_jobs, show_kinds, show_mapping
from ladder_client.output import status as styled
from ladder_client.watch import watch

OK, JOB_FAILED, USAGE, UNREACHABLE, UNFINISHED, INTERRUPTED = 0, 1, 2, 3, 4, 130
PAGE_MAX = 100
"""The largest page the API serves by default (LADDER_PAGE_LIMIT)."""


class UsageError(Exception):
    """What the command line asked for cannot be done on this machine (exit 2)."""


def count(text: str) -> int:
    """An argument that is a whole number, 0 or more."""
    value = int(text)  # argparse reports a ValueError as "invalid count value"
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def seconds(text: str) -> float:
    """An argument that is a number of seconds, 0 or more."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, not {text}")
    return value


def exit_code(error: LadderError) -> int:
    """The exit code an error ends the command with."""
    if isinstance(error, JobError):
        return JOB_FAILED
    if isinstance(error, LadderConnectionError) or error.status is None:
        return UNREACHABLE
    return USAGE if error.status < 500 else UNREACHABLE


def job_exit(job: Job) -> int:
    """The exit code for a job the command waited on or showed."""
    return JOB_FAILED if job.status in {"failed", "cancelled"} else OK


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`key=value` words as params: each value is JSON where it reads as JSON (`n=10`,
    `steps=[1,3]`, `stream=true`), else the text as it is (`prompt=Once upon`)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{item!r} is not KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def read_params_json(text: str) -> dict[str, Any]:
    """`--params-json`: a JSON object given inline, from a file (`@params.json`) or stdin (`-`)."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        text = Path(text[1:]).read_text()
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("--params-json must be a JSON object")
    return value


@dataclass
class Run:
    """What a command needs: its arguments, a client, and where to write."""

    args: argparse.Namespace
    client: Client
    out: Console
    err: Console

    @property
    def as_json(self) -> bool:
        return bool(self.args.json) or not self.out.is_terminal


def submit(run: Run) -> int:
    args = run.args
    try:
        params = read_params_json(args.params_json) if args.params_json else {}
        params.update(parse_assignments(args.params))
    except (OSError, ValueError) as exc:
        run.err.print(f"[red]error:[/] {exc}", highlight=False)
        return USAGE
    job = run.client.submit(
        args.kind,
        params,
        priority=args.priority,
        device=args.device,
        idempotency_key=args.idempotency_key,
        callback_url=args.callback_url,
    )
    if not args.wait:
        if run.as_json:
            dump(job.raw, run.out)
        else:
            run.out.print(f"{styled(job.status)} {job.id} ({job.kind})", highlight=False)
        return OK
    if not run.as_json:
        run.err.print(f"submitted {job.id}", style="dim", highlight=False)
    return _finish(run, watch(run.client, job.id, args.timeout, run.err))


def get(run: Run) -> int:
    job = run.client.get(run.args.id)
    _show(run, job)
    return job_exit(job)


def wait(run: Run) -> int:
    return _finish(run, watch(run.client, run.args.id, run.args.timeout, run.err))


def stream(run: Run) -> int:
    """Tokens as they come (every event as a JSON line with --json); the job's exit code."""
    text = ""
    for event in run.client.events(run.args.id):
        if run.args.json:
            line = {"event": event.event, "id": event.id, "data": event.data}
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        elif event.event == "token" and isinstance(event.data, dict):
            text = str(event.data.get("text", ""))
            sys.stdout.write(text)
        else:
            continue
        sys.stdout.flush()
    if text and not text.endswith("\n") and sys.stdout.isatty():
        sys.stdout.write("\n")
    job = run.client.get(run.args.id)
    if job.error:
        run.err.print(f"[red]{job.status}:[/] {job.error.get('message')}", highlight=False)
    return job_exit(job) if job.finished else UNFINISHED


def cancel(run: Run) -> int:
    _show(run, run.client.cancel(run.args.id))
    return OK


def ls(run: Run) -> int:
    args = run.args
    page = min(args.limit, PAGE_MAX) if args.limit else PAGE_MAX
    jobs = run.client.jobs(kind=args.kind, status=args.status, page_size=page)
    listed = islice(jobs, args.limit) if args.limit else jobs
    if run.as_json:
        dump([job.raw for job in listed], run.out)
    else:
        show_jobs(listed, run.out)
    return OK


def artifact(run: Run) -> int:
    args = run.args
    target = args.output or args.name
    if target == "-":
        run.client.artifact(args.id, args.name, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return OK
    try:
        size = run.client.artifact(args.id, args.name, target)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    if run.args.json:
        dump({"path": str(target), "bytes": size}, run.out)
    else:
        run.err.print(f"wrote {size:,} bytes to {target}", highlight=False)
    return OK


def chat(run: Run) -> int:
    args = run.args
    options = {
        "model": args.model,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "seed": args.seed,
    }
    return converse(run.client, options, Conversation(args.system), errors=run.err)


def kinds(run: Run) -> int:
    found = run.client.kinds()
    if run.as_json:
        dump([dataclasses.asdict(kind) for kind in found], run.out)
    else:
        show_kinds(found, run.out)
    return OK


def info(run: Run) -> int:
    found = run.client.info()
    if run.as_json:
        dump(found, run.out)
    else:
        show_mapping(found, run.out)
    return OK


def _show(run: Run, job: Job) -> None:
    if run.as_json:
        dump(job.raw, run.out)
    else:
        show_job(job, run.out)


def _finish(run: Run, job: Job) -> int:
    _show(run, job)
    if not job.finished:
        run.err.print(f"job {job.id} is still {job.status}: the timeout ran out", highlight=False)
        return UNFINISHED
    return job_exit(job)


def add_common(parser: argparse.ArgumentParser, default: Any) -> None:
    """--url, --token and --json, taken before the command and after it. Each parser gets
    actions of its own: shared ones (argparse's `parents`) share their defaults too, and a
    subcommand's default would overwrite what was given before the command."""
    parser.add_argument(
        "--url",
        default=default,
        help="Ladder's address (LADDER_URL; default http://127.0.0.1:8000)",
    )
    parser.add_argument("--token", default=default, help="API token (LADDER_TOKEN)")
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="JSON output (the default when stdout is not a terminal)",
    )


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="ladder",
        description="Ladder's jobs from a shell.",
        epilog="Exit codes: 0 succeeded, 1 job failed or cancelled, 2 bad usage or 4xx, "
        "3 cannot connect or 5xx, 4 job not ended when --timeout ran out, 130 interrupted.",
    )
    add_common(main, None)
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[Run], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        add_common(sub, argparse.SUPPRESS)  # given after the command, or not at all
        sub.set_defaults(run=run)
        return sub

    sub = command("submit", submit, "submit a job")
    sub.add_argument("kind", help="stairs, attention, generate, … (see `ladder kinds`)")
    sub.add_argument(
        "params",
        nargs="*",
        metavar="KEY=VALUE",
        help="a param; the value is JSON where it parses, else text",
    )
    sub.add_argument(
        "--params-json", metavar="JSON", help="params as a JSON object; @FILE reads a file, - stdin"
    )
    sub.add_argument("--priority", type=int, help="0-9, higher runs first")
    sub.add_argument("--device", choices=["auto", "cpu", "gpu"])
    sub.add_argument("--idempotency-key", help="the same key and body never make two jobs")
    sub.add_argument("--callback-url", help="where Ladder POSTs the job when it ends")
    sub.add_argument("--wait", action="store_true", help="wait for the end, with a bar")
    sub.add_argument("--timeout", type=seconds, help="with --wait: give up after SECONDS")
    command("get", get, "show a job").add_argument("id")
    sub = command("wait", wait, "wait for a job to end, with a progress bar")
    sub.add_argument("id")
    sub.add_argument("--timeout", type=seconds, help="give up after SECONDS (exit 4)")
    command("stream", stream, "print a generation's tokens as they come").add_argument("id")
    command("cancel", cancel, "cancel a queued or running job").add_argument("id")
    sub = command("ls", ls, "list jobs, newest first")
    sub.add_argument("--kind")
    sub.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    sub.add_argument("--limit", type=count, default=20, help="at most N (0: all; default 20)")
    sub = command("artifact", artifact, "download a file a job made")
    sub.add_argument("id")
    sub.add_argument("name", help="value.txt, heatmap.png, explorer.html, result.json, …")
    sub.add_argument(
        "-o", "--output", metavar="FILE", help="where to write (default NAME; - stdout)"
    )
    sub = command("chat", chat, "talk to a generate model (/v1/chat/completions)")
    sub.add_argument("--model", help="a model of the registry (default: the server's)")
    sub.add_argument("--system", help="a system message to start the conversation")
    sub.add_argument("--max-tokens", type=int)
    sub.add_argument("--temperature", type=float)
    sub.add_argument("--seed", type=int)
    command("kinds", kinds, "list the job kinds")
    command("info", info, "show the service's retention policy and this key's limits")
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    err = Console(stderr=True, soft_wrap=True)
    try:
        config = resolve(args.url, args.token)
        client = Client(config.url, config.token)
    except (ConfigError, httpx.InvalidURL) as exc:
        return _usage(err, exc)
    with client:
        try:
            return int(args.run(Run(args, client, Console(), err)))
        except LadderError as error:
            show_error(error, err, config.token is not None)
            _hint(error, config, err)
            return exit_code(error)
        except KeyboardInterrupt:
            return INTERRUPTED
        except BrokenPipeError:  # `ladder ls | head`: the reader has what it wanted
            sys.stderr.close()
            return OK
        except (UsageError, OSError, httpx.InvalidURL) as exc:
            return _usage(err, exc)


def _usage(err: Console, exc: Exception) -> int:
    """Bad usage, said in a line: a bad URL or token, a file that cannot be read or written."""
    err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
    return USAGE


def _hint(error: LadderError, config: Config, err: Console) -> None:
    if error.status == 401 and config.withheld_for:
        err.print(
            f"  (the config file's token is for {config.withheld_for}, so it was not sent to "
            f"{config.url})",
            highlight=False,
            markup=False,
        )


if __name__ == "__main__":
    sys.exit(main())
