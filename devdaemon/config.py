"""The daemon's TOML configuration, as the panel hands it out, read strictly."""

import logging
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

TOKEN_ID = re.compile(r"[a-z0-9]{16}")
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
KNOWN_KEYS = {
    "panel": {"url", "token_id", "token"},
    "api": {"host", "port", "upload_limit_mb", "tls_cert", "tls_key"},
    "sftp": {"host", "port"},
    "system": {"data_dir", "stop_timeout"},
}
DEFAULT_STOP_TIMEOUT = 10.0
DEFAULT_SFTP_HOST = "0.0.0.0"
DEFAULT_SFTP_PORT = 2022


class ConfigError(Exception):
    """The configuration file is missing, unreadable or has a wrong value."""


@dataclass(frozen=True)
class Config:
    panel_url: str
    token_id: str
    token: str
    host: str
    port: int
    upload_limit_mb: int
    tls_cert: Path | None
    tls_key: Path | None
    data_dir: Path
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    sftp_host: str = DEFAULT_SFTP_HOST
    sftp_port: int = DEFAULT_SFTP_PORT

    @property
    def upload_limit_bytes(self) -> int:
        return self.upload_limit_mb * 1024 * 1024

    @property
    def servers_dir(self) -> Path:
        return self.data_dir / "servers"


def load_config(path: Path) -> Config:
    """Read, check and prepare (create `data_dir`) the configuration at `path`."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read it: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"not valid TOML: {error}") from None
    config = parse_config(data)
    try:
        config.servers_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"[system] data_dir: cannot create {config.data_dir}: {error.strerror}"
        ) from None
    return config


def parse_config(data: dict[str, Any]) -> Config:
    warn_unknown_keys(data)
    panel = section(data, "panel")
    api = section(data, "api")
    system = section(data, "system")
    sftp = section(data, "sftp") if "sftp" in data else {}
    sftp_port = port_number(sftp, "sftp", "port") if "port" in sftp else None

    tls_cert = optional(api, "api", "tls_cert", str)
    tls_key = optional(api, "api", "tls_key", str)
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("[api] tls_cert and tls_key go together: set both or neither")
    return Config(
        panel_url=panel_url(panel),
        token_id=matching(panel, "panel", "token_id", TOKEN_ID, "16 of [a-z0-9]"),
        token=matching(panel, "panel", "token", TOKEN, "43 base64url characters"),
        host=required(api, "api", "host", str),
        port=port_number(api, "api", "port"),
        upload_limit_mb=positive(api, "api", "upload_limit_mb", int),
        tls_cert=Path(tls_cert) if tls_cert else None,
        tls_key=Path(tls_key) if tls_key else None,
        data_dir=Path(required(system, "system", "data_dir", str)),
        stop_timeout=float(
            positive(system, "system", "stop_timeout", float, DEFAULT_STOP_TIMEOUT)
        ),
        sftp_host=optional(sftp, "sftp", "host", str) or DEFAULT_SFTP_HOST,
        sftp_port=sftp_port or DEFAULT_SFTP_PORT,
    )


def warn_unknown_keys(data: dict[str, Any]) -> None:
    for name, value in data.items():
        if name not in KNOWN_KEYS:
            logger.warning("config: unknown section [%s] ignored", name)
        elif isinstance(value, dict):
            for key in value.keys() - KNOWN_KEYS[name]:
                logger.warning("config: unknown key [%s] %s ignored", name, key)


def section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] is missing")
    return value


def optional(table: dict[str, Any], name: str, key: str, kind: type) -> Any:
    value = table.get(key)
    if value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    # bool is a subclass of int, but `port = true` is a mistake, not a number.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"[{name}] {key} must be {KIND_NAMES[kind]}")
    if kind is str and not value.strip():
        raise ConfigError(f"[{name}] {key} must not be empty")
    return value


KIND_NAMES = {str: "a string", int: "an integer", float: "a number"}


def required(table: dict[str, Any], name: str, key: str, kind: type) -> Any:
    value = optional(table, name, key, kind)
    if value is None:
        raise ConfigError(f"[{name}] {key} is missing")
    return value


def positive(
    table: dict[str, Any], name: str, key: str, kind: type, default: Any = None
) -> Any:
    value = optional(table, name, key, kind)
    if value is None and default is not None:
        return default
    if value is None:
        raise ConfigError(f"[{name}] {key} is missing")
    if value <= 0:
        raise ConfigError(f"[{name}] {key} must be greater than 0")
    return value


def port_number(table: dict[str, Any], name: str, key: str) -> int:
    value = required(table, name, key, int)
    if not 1 <= value <= 65535:
        raise ConfigError(f"[{name}] {key} must be between 1 and 65535")
    return value


def matching(
    table: dict[str, Any], name: str, key: str, pattern: re.Pattern, shape: str
) -> str:
    value = required(table, name, key, str)
    if not pattern.fullmatch(value):
        raise ConfigError(f"[{name}] {key} must be {shape}")
    return value


def panel_url(panel: dict[str, Any]) -> str:
    value = required(panel, "panel", "url", str)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("[panel] url must be an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ConfigError("[panel] url must not have a query or a fragment")
    return value.rstrip("/")
