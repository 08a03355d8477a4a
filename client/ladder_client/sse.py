"""Server-sent events (the WHATWG text/event-stream format), read a line at a time."""

from __future__ import annotations

import json
from typing import Any

from ladder_client.models import Event


class Decoder:
    """Turns the lines of one connection into events. A new connection needs a new Decoder:
    an event cut short by a dropped connection is never dispatched."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> Event | None:
        """Take one line (without its end); an event when the line is the blank one that ends
        it, else None."""
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):  # a comment: the server's keep-alive
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> Event | None:
        if not self._data and not self._event:
            self._id = None
            return None
        event = Event(self._event or "message", parse_data("\n".join(self._data)), self._id)
        self._event, self._data, self._id = "", [], None
        return event


def parse_data(text: str) -> Any:
    """An event's data: JSON where it is JSON (Ladder's always is), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text
