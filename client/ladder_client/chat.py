"""`ladder chat`: a conversation with a generate model over `/v1/chat/completions`, streamed,
the whole history sent with each turn as OpenAI's API expects."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console

from ladder_client.client import Client
from ladder_client.errors import LadderError
from ladder_client.output import show_error

HELP = "Type a message and Enter. /reset forgets the conversation, /exit (or Ctrl-D) leaves."


@dataclass
class Conversation:
    system: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.history = [{"role": "system", "content": self.system}] if self.system else []


def converse(
    client: Client,
    options: dict[str, Any],
    conversation: Conversation,
    out: TextIO = sys.stdout,
    ask: Callable[[str], str] = input,
    errors: Console | None = None,
    interactive: bool | None = None,
) -> int:
    """Read a message, stream the answer, repeat until end of input. An error in a turn is
    shown and the turn forgotten; at a terminal the conversation goes on, in a script it ends
    the command with the error's exit code (raised to the caller)."""
    if interactive is None:
        interactive = sys.stdin.isatty()
    errors = errors or Console(stderr=True, soft_wrap=True)
    if interactive:
        errors.print(HELP, style="dim")
    while True:
        try:
            line = ask("you> " if interactive else "")
        except EOFError:
            if interactive:
                out.write("\n")
            return 0
        text = line.strip()
        if not text:
            continue
        if text in {"/exit", "/quit"}:
            return 0
        if text == "/reset":
            conversation.reset()
            continue
        conversation.history.append({"role": "user", "content": text})
        pieces: list[str] = []
        try:
            for piece in client.chat(conversation.history, **options):
                out.write(piece)
                out.flush()
                pieces.append(piece)
        except LadderError as error:
            conversation.history.pop()
            if pieces:
                out.write("\n")
            if not interactive:
                raise
            show_error(error, errors, client.token is not None)
            continue
        out.write("\n")
        out.flush()
        conversation.history.append({"role": "assistant", "content": "".join(pieces)})
