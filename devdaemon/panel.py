"""Our calls to the panel's remote API (`{panel_url}/api/remote/...`), signed.

Callers see one error, PanelError, never a transport exception. Reports (a state, an
install's outcome) are best effort: they go out one at a time, in order, and a report
the panel does not take is logged and dropped.
"""

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from devdaemon.signing import signed_headers

logger = logging.getLogger(__name__)

TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)
MAX_QUEUED_REPORTS = 1000
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0


class PanelError(Exception):
    """The panel could not be reached, or did not answer as the protocol says."""


@dataclass(frozen=True)
class SFTPGrant:
    """The panel's yes to an SFTP login: which server, for whom, with what rights."""

    server: str
    user: str
    permissions: list[str]

    def is_valid(self) -> bool:
        return (
            isinstance(self.server, str)
            and isinstance(self.user, str)
            and isinstance(self.permissions, list)
            and all(isinstance(p, str) for p in self.permissions)
        )


class Panel:
    def __init__(self, url: str, token_id: str, token: str) -> None:
        self.url = url
        self.token_id = token_id
        self.token = token
        self.session: aiohttp.ClientSession | None = None
        self.reports: asyncio.Queue[tuple[str, dict]] = asyncio.Queue(
            MAX_QUEUED_REPORTS
        )
        self.reporter: asyncio.Task | None = None
        self.unreachable = False

    async def open(self) -> None:
        self.session = aiohttp.ClientSession(timeout=TIMEOUT)
        self.reporter = asyncio.create_task(self.deliver_reports())

    async def close(self) -> None:
        # Queued reports (servers going offline, say) get a moment to reach the panel.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self.reports.join()
        if self.reporter:
            self.reporter.cancel()
        if self.session:
            await self.session.close()

    async def send(
        self, method: str, route: str, payload: Any = None
    ) -> tuple[int, bytes]:
        """Call `route` (under /api/remote/); its status and body, whatever they are."""
        assert self.session, "Panel.open() first"
        url = URL(f"{self.url}/api/remote/{route}")
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = signed_headers(
            self.token_id, self.token, method, url.raw_path_qs, body
        )
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self.session.request(
                method, url, data=body, headers=headers, allow_redirects=False
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            reason = str(error) or type(error).__name__
            self.went_wrong(f"{method} {route}: {reason}")
            raise PanelError(f"cannot reach the panel: {reason}") from error

    async def request(self, method: str, route: str, payload: Any = None) -> Any:
        """Call `route` (under /api/remote/); the decoded JSON answer, if any."""
        status, answer = await self.send(method, route, payload)
        if not 200 <= status < 300:
            self.went_wrong(f"{method} {route} answered {status}")
            raise PanelError(f"the panel answered {status}")
        self.went_right()
        try:
            return json.loads(answer) if answer else None
        except ValueError:
            raise PanelError("the panel's answer is not JSON") from None

    def went_wrong(self, what: str) -> None:
        # Once per outage: a panel that is down for an hour is one warning, not 3600.
        if not self.unreachable:
            logger.warning(
                "panel call failed: %s (more failures go unlogged until one works)",
                what,
            )
        self.unreachable = True

    def went_right(self) -> None:
        if self.unreachable:
            logger.info("panel calls work again")
        self.unreachable = False

    def report(self, route: str, payload: dict) -> None:
        """Send `payload` to `route` in the background, after earlier reports."""
        try:
            self.reports.put_nowait((route, payload))
        except asyncio.QueueFull:
            logger.warning("too many reports queued for the panel; dropped %s", route)

    def report_state(self, server_id: str, state: str) -> None:
        self.report(f"servers/{server_id}/status", {"state": state})

    def report_install(self, server_id: str, successful: bool) -> None:
        self.report(f"servers/{server_id}/install", {"successful": successful})

    async def deliver_reports(self) -> None:
        while True:
            route, payload = await self.reports.get()
            try:
                await self.request("POST", route, payload)
            except PanelError:
                pass  # best effort; went_wrong() has logged the outage
            finally:
                self.reports.task_done()

    async def fetch_servers(self) -> list[Any]:
        """The panel's list of our servers, retrying with backoff until it answers."""
        delay = FIRST_RETRY_S
        while True:
            try:
                answer = await self.request("GET", "servers")
            except PanelError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_S)
                continue
            if isinstance(answer, dict) and isinstance(answer.get("servers"), list):
                return answer["servers"]
            logger.warning(
                "the panel's server list is not {'servers': [...]}: %.200r", answer
            )
            await asyncio.sleep(MAX_RETRY_S)

    async def sftp_auth(
        self, username: str, password: str, ip: str
    ) -> SFTPGrant | None:
        """The panel's grant for an SFTP login, None when the panel refuses it."""
        payload = {"username": username, "password": password, "ip": ip}
        status, answer = await self.send("POST", "sftp/auth", payload)
        # An overlong password is the client's doing (400), not a panel that fails.
        if status in (400, 403, 429):
            self.went_right()
            return None
        if status != 200:
            self.went_wrong(f"POST sftp/auth answered {status}")
            raise PanelError(f"the panel answered {status}")
        self.went_right()
        try:
            data = json.loads(answer)
            grant = SFTPGrant(data["server"], data["user"], data["permissions"])
        except (ValueError, TypeError, KeyError):
            grant = None
        if grant is None or not grant.is_valid():
            logger.warning("the panel's SFTP grant is not as agreed: %.200r", answer)
            raise PanelError("the panel's SFTP grant is not as agreed")
        return grant
