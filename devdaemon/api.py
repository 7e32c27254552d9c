"""The daemon's HTTP API: middlewares, the system and server routes, the app."""

import logging
import os
import platform
import shutil
import time
from typing import Any

import psutil
from aiohttp import web
from aiohttp.typedefs import Handler

from devdaemon import __version__, files, websocket
from devdaemon.daemon import DAEMON, Daemon, server_of
from devdaemon.errors import BadRequest, DaemonError, TooLarge
from devdaemon.serverconfig import parse_server_config

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
}


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as {"error", "message"}, never aiohttp's HTML pages.

    NB: a request too malformed for aiohttp's HTTP parser never reaches a handler,
    and gets aiohttp's own plain-text 400.
    """
    try:
        return await handler(request)
    except DaemonError as error:
        return error_response(error.status, error.code, str(error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = CODES.get(
            error.status, "internal" if error.status >= 500 else "bad_request"
        )
        return error_response(error.status, code, http_message(request, error))
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal", "the daemon failed on this request")


def http_message(request: web.Request, error: web.HTTPException) -> str:
    if error.status == 404:
        return f"there is nothing at {request.path}"
    if error.status == 405:
        return f"{request.method} is not allowed on {request.path}"
    return error.reason


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Only requests signed with this node's token, each once (PROTOCOL.md)."""
    daemon = request.app[DAEMON]
    claim = daemon.verifier.claim(request.headers)
    # The body is read whole, into memory, to be hashed before anything acts on it:
    # one over the node's upload limit (the app's client_max_size) is refused
    # before it is read, or as it comes. Only that limit is told before the
    # signature is checked; the room a server has left is for signed requests
    # alone (the handlers reserve it).
    refusal = (
        f"the body is over this node's upload limit of "
        f"{daemon.config.upload_limit_mb} MB"
    )
    length = request.content_length
    if length is not None and length > daemon.config.upload_limit_bytes:
        raise TooLarge(refusal)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge(refusal) from None
    daemon.verifier.verify(claim, request.method, request.raw_path, body)
    return await handler(request)


async def json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise BadRequest("the body is not JSON") from None


@routes.get("/api/system")
async def system(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return web.json_response(
        {
            "version": __version__,
            "os": platform.system().lower(),
            "architecture": platform.machine(),
            "kernel_version": platform.release(),
            "cpu_count": os.cpu_count() or 1,
            "memory_bytes": psutil.virtual_memory().total,
            "disk_bytes": shutil.disk_usage(daemon.config.data_dir).total,
            "server_count": len(daemon.servers),
            "time": time.time(),
        }
    )


@routes.post("/api/servers")
async def create_server(request: web.Request) -> web.Response:
    config = parse_server_config(await json_body(request))
    server = await request.app[DAEMON].create(config)
    return web.json_response(await server.describe(), status=201)


@routes.get("/api/servers/{id}")
async def get_server(request: web.Request) -> web.Response:
    return web.json_response(await server_of(request).describe())


@routes.post("/api/servers/{id}/install")
async def install_server(request: web.Request) -> web.Response:
    server_of(request).install()
    return web.Response(status=202)


@routes.post("/api/servers/{id}/power")
async def power(request: web.Request) -> web.Response:
    server = server_of(request)
    data = await json_body(request)
    if not isinstance(data, dict):
        raise BadRequest('the body must be {"action": ...}')
    server.power(data.get("action"))
    return web.Response(status=202)


@routes.post("/api/servers/{id}/sync")
async def sync_server(request: web.Request) -> web.Response:
    server = server_of(request)
    config = parse_server_config(await json_body(request))
    if config.id != server.id:
        raise BadRequest(f"id is {config.id!r}, not this server's {server.id!r}")
    server.update(config)
    return web.json_response(await server.describe())


@routes.delete("/api/servers/{id}")
async def delete_server(request: web.Request) -> web.Response:
    await request.app[DAEMON].delete(request.match_info["id"])
    return web.Response(status=204)


def make_app(daemon: Daemon) -> web.Application:
    app = web.Application(
        middlewares=[json_errors, authenticate],
        client_max_size=daemon.config.upload_limit_bytes,
    )
    app[DAEMON] = daemon
    app.add_routes(routes)
    app.add_routes(files.routes)
    app.add_routes(websocket.routes)
    app.on_startup.append(start_daemon)
    app.on_shutdown.append(stop_daemon)
    return app


async def start_daemon(app: web.Application) -> None:
    await app[DAEMON].start()


async def stop_daemon(app: web.Application) -> None:
    await app[DAEMON].shutdown()
