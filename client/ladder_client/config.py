"""Where the `ladder` command finds its service and token: `--url`/`--token`, else the
environment (LADDER_URL, LADDER_TOKEN), else the config file, else `make run`'s address.

The file is `$XDG_CONFIG_HOME/ladder/config.toml` (`~/.config/ladder/config.toml` by default):

    url = "https://ladder.example.com"
    token = "…"

The file's token belongs to the file's URL (`make run`'s address where the file names none): it
is sent only when the URL in use is that one, so `--url`/LADDER_URL pointing elsewhere never
carries it to another host. A token for another service comes from `--token` or LADDER_TOKEN.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from ladder_client.protocol import DEFAULT_URL

DEFAULT_PORTS = {"http": 80, "https": 443}


class ConfigError(Exception):
    """The config file cannot be read as TOML or holds something other than strings, the URL
    is not an http(s) URL, or the token cannot go in a header."""


@dataclass(frozen=True)
class Config:
    url: str
    token: str | None
    withheld_for: str | None = None
    """The config file's URL where the file's token was not sent because another URL is in
    use (for a hint when the service then answers 401)."""


def config_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "ladder" / "config.toml"


def read_file(path: Path) -> dict[str, str]:
    """The file's `url` and `token`; nothing when there is no file."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    found = {}
    for name in ("url", "token"):
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ConfigError(f"{path}: `{name}` must be a string")
        found[name] = value
    return found


def service(url: str) -> tuple[str, str, int, str] | None:
    """What makes two URLs the same service: scheme, host and port (the scheme's default where
    none is given), and path without its trailing slashes; None for no http(s) URL."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return None
    if parsed.scheme not in DEFAULT_PORTS or not parsed.host:
        return None
    port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    return parsed.scheme, parsed.host, port, parsed.path.rstrip("/")


def checked_url(url: str) -> str:
    if service(url) is None:
        raise ConfigError(
            f"{url!r} is not a URL Ladder can be reached at: it needs http:// or https:// and "
            "a host, as in http://127.0.0.1:8000"
        )
    return url


def checked_token(token: str | None) -> str | None:
    """The token, if it can go in an Authorization header (printable ASCII; never echoed)."""
    if token is not None and not (token.isascii() and token.isprintable()):
        raise ConfigError(
            "the token must be printable ASCII (no newline or other control character)"
        )
    return token


def resolve(
    url: str | None = None, token: str | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """The URL and token to use, from the first place that names each; the file's token only
    with the file's URL."""
    env = os.environ if env is None else env
    if url and token:  # the file need not even be readable
        return Config(checked_url(url), checked_token(token))
    file = read_file(config_path(env))
    chosen = url or env.get("LADDER_URL") or file.get("url") or DEFAULT_URL
    token = token or env.get("LADDER_TOKEN") or None  # set but empty: unset
    withheld = None
    if token is None and "token" in file:
        home = file.get("url") or DEFAULT_URL
        if service(chosen) is not None and service(chosen) == service(home):
            token = file["token"]
        else:
            withheld = home
    return Config(checked_url(chosen), checked_token(token), withheld)
