"""Where `ladder` finds its URL and token: flags, then the environment, then the config file
(under XDG_CONFIG_HOME), then `make run`'s address."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladder_client.config import Config, ConfigError, config_path, resolve


def write_config(home: Path, text: str) -> None:
    path = home / "ladder" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(text)


def test_flags_then_environment_then_file_then_default(tmp_path: Path) -> None:
    write_config(tmp_path, 'url = "http://file:1"\ntoken = "file-token"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert resolve(env=env) == Config("http://file:1", "file-token")
    env |= {"LADDER_URL": "http://env:2", "LADDER_TOKEN": "env-token"}
    assert resolve(env=env) == Config("http://env:2", "env-token")
    assert resolve("http://flag:3", None, env) == Config("http://flag:3", "env-token")
    assert resolve(None, "flag-token", env) == Config("http://env:2", "flag-token")
    assert resolve(env={"XDG_CONFIG_HOME": str(tmp_path / "none")}) == Config(
        "http://127.0.0.1:8000", None
    )


def test_the_file_is_under_home_s_config_without_xdg(tmp_path: Path) -> None:
    assert config_path({"HOME": str(tmp_path)}) == tmp_path / ".config/ladder/config.toml"
    write_config(tmp_path / ".config", 'token = "t"\n')
    assert resolve(env={"HOME": str(tmp_path)}).token == "t"


@pytest.mark.parametrize("text", ["url = ", "url = 8000\n"])
def test_a_bad_file_is_an_error_that_names_it(tmp_path: Path, text: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=r"config\.toml"):
        resolve(env={"XDG_CONFIG_HOME": str(tmp_path)})


def test_the_file_s_token_goes_only_to_the_file_s_url(tmp_path: Path) -> None:
    write_config(tmp_path, 'url = "https://ladder.example.com"\ntoken = "file-token"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    for same in ["https://ladder.example.com/", "HTTPS://Ladder.Example.com:443"]:
        assert resolve(same, None, env).token == "file-token"
    for other in [
        "https://evil.example.net",
        "http://ladder.example.com",
        "https://ladder.example.com:8443",
    ]:
        assert resolve(other, None, env) == Config(other, None, "https://ladder.example.com")
        assert resolve(env=env | {"LADDER_URL": other}).token is None
    assert resolve(env=env | {"LADDER_TOKEN": ""}).token == "file-token"  # empty: unset
    # A token named for the run still goes wherever the run's URL points.
    assert resolve("https://evil.example.net", "flag-token", env).token == "flag-token"
    assert resolve(env=env | {"LADDER_URL": "http://x", "LADDER_TOKEN": "e"}).token == "e"


def test_a_file_token_without_a_url_is_for_make_run_s_address(tmp_path: Path) -> None:
    write_config(tmp_path, 'token = "file-token"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert resolve(env=env) == Config("http://127.0.0.1:8000", "file-token")
    assert resolve("http://127.0.0.1:8000/", None, env).token == "file-token"
    assert resolve("http://ladder.example.com", None, env).token is None


@pytest.mark.parametrize(
    "url",
    ["127.0.0.1:8000", "localhost:8000", "ladder.example.com", "ftp://x", "http://", "http://[::1"],
)
def test_a_url_without_scheme_or_host_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        resolve(url, "t", {})


def test_a_token_that_cannot_be_a_header_is_a_config_error_that_does_not_echo_it() -> None:
    for token in ["tökén", "a\nb"]:
        with pytest.raises(ConfigError, match="printable ASCII") as caught:
            resolve("http://x", token, {})
        assert token not in str(caught.value)
