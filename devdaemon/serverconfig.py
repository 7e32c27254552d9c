"""A server's config as the panel sends it (PROTOCOL.md, "Server config"), checked."""

import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from devdaemon.errors import BadRequest

SERVER_ID = re.compile(r"[a-z0-9]{1,64}")
MAX_NAME = 200
MAX_STARTUP = 4000


@dataclass(frozen=True)
class Address:
    ip: str
    port: int


@dataclass(frozen=True)
class Limits:
    cpu: int
    memory_mb: int
    disk_mb: int

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * 1024 * 1024

    @property
    def disk_bytes(self) -> int:
        return self.disk_mb * 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    id: str
    name: str
    limits: Limits
    default: Address
    additional: list[Address]
    startup: str
    environment: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "limits": asdict(self.limits),
            "allocations": self.allocations(),
            "startup": self.startup,
            "environment": dict(self.environment),
        }

    def allocations(self) -> dict[str, Any]:
        return {
            "default": asdict(self.default),
            "additional": [asdict(address) for address in self.additional],
        }


def parse_server_config(data: Any) -> ServerConfig:
    """The config in `data`; BadRequest naming the first field that is wrong."""
    if not isinstance(data, dict):
        raise BadRequest("the server config must be a JSON object")
    server_id = data.get("id")
    if not isinstance(server_id, str) or not SERVER_ID.fullmatch(server_id):
        raise BadRequest("id must be 1 to 64 characters of [a-z0-9]")
    name = data.get("name")
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise BadRequest(f"name must be a string of at most {MAX_NAME} characters")
    allocations = data.get("allocations")
    if not isinstance(allocations, dict):
        raise BadRequest("allocations must be an object")
    additional = allocations.get("additional", [])
    if not isinstance(additional, list):
        raise BadRequest("allocations.additional must be a list")
    return ServerConfig(
        id=server_id,
        name=name,
        limits=parse_limits(data.get("limits")),
        default=parse_address(allocations.get("default"), "allocations.default"),
        additional=[
            parse_address(item, f"allocations.additional[{index}]")
            for index, item in enumerate(additional)
        ],
        startup=parse_startup(data.get("startup")),
        environment=parse_environment(data.get("environment", {})),
    )


def parse_limits(limits: Any) -> Limits:
    if not isinstance(limits, dict):
        raise BadRequest("limits must be an object")
    for key in ("cpu", "memory_mb", "disk_mb"):
        value = limits.get(key)
        if not positive_int(value):
            raise BadRequest(f"limits.{key} must be an integer greater than 0")
    return Limits(limits["cpu"], limits["memory_mb"], limits["disk_mb"])


def parse_address(address: Any, where: str) -> Address:
    if not isinstance(address, dict):
        raise BadRequest(f"{where} must be an object with ip and port")
    ip = address.get("ip")
    if not isinstance(ip, str) or not ip or len(ip) > 255:
        raise BadRequest(f"{where}.ip must be a non-empty string")
    port = address.get("port")
    if not positive_int(port) or port > 65535:
        raise BadRequest(f"{where}.port must be an integer from 1 to 65535")
    return Address(ip, port)


def parse_startup(startup: Any) -> str:
    if not isinstance(startup, str) or not startup.strip():
        raise BadRequest("startup must be a non-empty string")
    if len(startup) > MAX_STARTUP:
        raise BadRequest(f"startup must be at most {MAX_STARTUP} characters")
    try:
        shlex.split(startup)
    except ValueError as error:
        raise BadRequest(f"startup is not a valid command line: {error}") from None
    return startup


def parse_environment(environment: Any) -> dict[str, str]:
    if not isinstance(environment, dict):
        raise BadRequest("environment must be an object of strings")
    for key, value in environment.items():
        if not key or "=" in key or "\0" in key:
            raise BadRequest(f"environment has an invalid variable name {key!r}")
        if not isinstance(value, str) or "\0" in value:
            raise BadRequest(f"environment.{key} must be a string")
    return dict(environment)


def positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
