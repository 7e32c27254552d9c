"""Signed requests between the panel and its daemons (docs/PROTOCOL.md).

Both directions carry the same three headers. The panel signs its requests to a
daemon with `sign`, and checks a daemon's requests to the remote API with `verify`.
The token is the HMAC key and never travels; only the token ID and the signature do.
"""

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Protocol

TIMESTAMP_WINDOW = 60  # seconds either side of the receiver's clock
NONCE_SECONDS = 120  # how long a nonce is remembered, per token ID

TIMESTAMP_HEADER = "X-Stellar-Timestamp"
NONCE_HEADER = "X-Stellar-Nonce"

AUTHORIZATION = re.compile(r"Bearer ([a-z0-9]{16})\.([A-Za-z0-9_-]{43})")
TIMESTAMP = re.compile(r"[0-9]{1,12}")
NONCE = re.compile(r"[A-Za-z0-9_-]{22}")  # 16 bytes, base64url without padding


class SignatureRefused(Exception):
    """A request's signature headers are missing, malformed, stale, replayed or
    do not match. The message says which, for the sender's operator."""


class NonceStore(Protocol):
    """Where nonces are remembered: Django's cache fits.

    `add` must be atomic and return False when the key is already there.
    """

    def add(self, key: str, value: int, timeout: int) -> bool: ...


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signature(
    token: str, method: str, target: str, timestamp: str, nonce: str, body: bytes
) -> str:
    """The signature of a request: target is its path with the query as sent."""
    digest = hashlib.sha256(body).hexdigest()
    message = f"{method.upper()}\n{target}\n{timestamp}\n{nonce}\n{digest}"
    mac = hmac.new(token.encode("ascii"), message.encode("utf-8"), hashlib.sha256)
    return _b64(mac.digest())


def sign(
    token_id: str,
    token: str,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that sign one request; a fresh nonce and the current time."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_urlsafe(16) if nonce is None else nonce
    mac = signature(token, method, target, stamp, nonce, body)
    return {
        "Authorization": f"Bearer {token_id}.{mac}",
        TIMESTAMP_HEADER: stamp,
        NONCE_HEADER: nonce,
    }


def verify(
    headers: Mapping[str, str],
    method: str,
    target: str,
    body: bytes,
    *,
    tokens: Callable[[str], str | None],
    nonces: NonceStore,
    clock: Callable[[], float] = time.time,
) -> str:
    """Check a signed request and return its token ID, or raise SignatureRefused.

    `tokens` gives the token of a token ID, None for an unknown one. The nonce is
    remembered only once the signature holds, so that unsigned requests cannot
    fill the store.
    """
    authorization = AUTHORIZATION.fullmatch(headers.get("Authorization") or "")
    if authorization is None:
        raise SignatureRefused(
            "The Authorization header is missing or is not "
            "'Bearer {token_id}.{signature}'."
        )
    token_id, given = authorization.groups()
    stamp = headers.get(TIMESTAMP_HEADER) or ""
    nonce = headers.get(NONCE_HEADER) or ""
    if not TIMESTAMP.fullmatch(stamp):
        raise SignatureRefused(
            f"The {TIMESTAMP_HEADER} header is missing or is not unix seconds."
        )
    if not NONCE.fullmatch(nonce):
        raise SignatureRefused(
            f"The {NONCE_HEADER} header is missing or is not 16 bytes in base64url."
        )

    token = tokens(token_id)
    if token is None:
        raise SignatureRefused(f"No node has the token ID {token_id}.")
    _check_timestamp(int(stamp), clock())

    expected = signature(token, method, target, stamp, nonce, body)
    if not hmac.compare_digest(expected.encode("ascii"), given.encode("ascii")):
        raise SignatureRefused(
            "The signature does not match the request: check the token, and that "
            "the method, path with query, timestamp, nonce and body are signed as "
            "sent."
        )
    if not nonces.add(f"stellar-nonce:{token_id}:{nonce}", 1, timeout=NONCE_SECONDS):
        raise SignatureRefused(
            "The nonce was already used: a request is never sent twice."
        )
    return token_id


def _check_timestamp(stamp: int, now: float) -> None:
    skew = stamp - now
    if abs(skew) <= TIMESTAMP_WINDOW:
        return
    direction = "ahead of" if skew > 0 else "behind"
    raise SignatureRefused(
        f"The timestamp is {int(abs(skew))} seconds {direction} the receiver's "
        f"clock; at most {TIMESTAMP_WINDOW} are allowed. Check that both machines "
        "keep time (NTP)."
    )
