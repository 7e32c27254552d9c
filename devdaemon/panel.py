"""Our calls to the panel's remote API (`{panel_url}/api/remote/...`), signed.

Callers see one error, PanelError, never a transport exception. Reports (a state, an
install's outcome) are best effort: they go out one at a time, in order, and a report
the panel does not take is logged and dropped.
"""

import asyncio
import contextlib
import json
import logging
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

    async def request(self, method: str, route: str, payload: Any = None) -> Any:
        """Call `route` (under /api/remote/); the decoded JSON answer, if any."""
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
                answer = await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            reason = str(error) or type(error).__name__
            self.went_wrong(f"{method} {route}: {reason}")
            raise PanelError(f"cannot reach the panel: {reason}") from error
        if not 200 <= response.status < 300:
            self.went_wrong(f"{method} {route} answered {response.status}")
            raise PanelError(f"the panel answered {response.status}")
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
