"""Strict readers for the settings that come from the environment.

Each reader names the variable in its error, so a bad value stops start-up with a
message an operator can act on instead of a traceback.
"""

import ipaddress
import os
import zoneinfo
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def envbool(name: str, default: bool) -> bool:
    value = os.getenv(name, "").strip()
    if not value:
        return default
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be True or False, not {value!r}.")


def envint(
    name: str, default: int, minimum: int | None = None, maximum: int | None = None
) -> int:
    value = os.getenv(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a whole number, not {value!r}."
        ) from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {number}.")
    return number


def envstr(name: str, default: str = "") -> str:
    return os.getenv(name, "").strip() or default


def envsecret(name: str) -> str:
    """Read a secret from NAME, or from the file that NAME_FILE points at."""
    path = os.getenv(f"{name}_FILE", "").strip()
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as e:
            raise ImproperlyConfigured(
                f"{name}_FILE points at {path!r}, which cannot be read: {e.strerror}."
            ) from None
    return os.getenv(name, "").strip()


def envlist(name: str, default: list[str]) -> list[str]:
    value = os.getenv(name, "").strip()
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def database_from_url(name: str, url: str, base_dir: str) -> dict:
    """Turn a sqlite:/// or postgres:// URL into a Django DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if not path or path == "/":
            raise ImproperlyConfigured(
                f"{name} names no file: use sqlite:///db.sqlite3 (relative) "
                "or sqlite:////var/lib/stellarpanel/db.sqlite3 (absolute)."
            )
        # sqlite:///name is relative to the project, sqlite:////abs is absolute.
        path = path[1:]
        if not os.path.isabs(path):
            path = os.path.join(base_dir, path)
        return {
            "ENGINE": "stellarpanel.sqlite",
            "NAME": path,
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    if parts.scheme in ("postgres", "postgresql"):
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ImproperlyConfigured(
                f"{name} names no database: add it after the host, as in "
                "postgres://user:password@127.0.0.1:5432/stellarpanel."
            )
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} has a port that is not a number from 1 to 65535."
            ) from None
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": database,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(port or ""),
            "OPTIONS": dict(parse_qsl(parts.query)),
        }
    raise ImproperlyConfigured(
        f"{name} must start with sqlite:/// or postgres://, "
        f"not {parts.scheme or url!r}."
    )


def channel_layer_from_url(name: str, url: str) -> dict:
    if not url:
        return {"BACKEND": "stellarpanel.layers.MemoryChannelLayer"}
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or not (
        parts.hostname or parts.path
    ):
        raise ImproperlyConfigured(
            f"{name} must be a redis:// or rediss:// URL such as "
            f"redis://127.0.0.1:6379/0, not {url!r}."
        )
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [url]},
    }


def networks_from_list(name: str, items: list[str]) -> list[Network]:
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} holds {item!r}, which is not a network: use CIDR "
                "notation such as 10.0.0.0/8 or fd00::/8, separated by commas."
            ) from None
    return networks


def panel_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(
            f"{name} must be the panel's public address, such as "
            f"https://panel.example.com, not {url!r}."
        )
    if parts.query or parts.fragment:
        raise ImproperlyConfigured(f"{name} must not carry a query or a fragment.")
    return url.rstrip("/")


def log_level(name: str, value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise ImproperlyConfigured(
            f"{name} must be one of {', '.join(LOG_LEVELS)}, not {value!r}."
        )
    return level


def time_zone(name: str, value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ImproperlyConfigured(
            f"{name} must be a time zone name such as UTC or Europe/Berlin, "
            f"not {value!r}."
        ) from None
    return value
