"""Signed requests, both ways: signing our calls and verifying the panel's.

A request carries `Authorization: Bearer {token_id}.{signature}`,
`X-Stellar-Timestamp` and `X-Stellar-Nonce`; the signature is an HMAC-SHA256, keyed
with the token's text, over the method, the path with its query as sent, the
timestamp, the nonce and the SHA-256 of the body.
"""

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from devdaemon.errors import Unauthorized

TIMESTAMP_HEADER = "X-Stellar-Timestamp"
NONCE_HEADER = "X-Stellar-Nonce"
MAX_SKEW_S = 60
NONCE_TTL_S = 120
MAX_NONCES = 100_000
TIMESTAMP = re.compile(r"\d{1,12}")
NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signature(
    token: str, method: str, path: str, timestamp: str, nonce: str, body: bytes
) -> str:
    digest = hashlib.sha256(body).hexdigest()
    message = f"{method}\n{path}\n{timestamp}\n{nonce}\n{digest}"
    mac = hmac.new(token.encode("ascii"), message.encode(), hashlib.sha256)
    return b64url(mac.digest())


def signed_headers(
    token_id: str, token: str, method: str, path: str, body: bytes
) -> dict[str, str]:
    """The three headers that sign a request of ours."""
    timestamp = str(int(time.time()))
    nonce = b64url(secrets.token_bytes(16))
    mac = signature(token, method, path, timestamp, nonce, body)
    return {
        "Authorization": f"Bearer {token_id}.{mac}",
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
    }


@dataclass(frozen=True)
class Claim:
    """What a request's headers say about it, before its body is read."""

    signature: str
    timestamp: str
    nonce: str


class ReplayCache:
    """Nonces seen in the last `ttl` seconds, at most `limit` of them."""

    def __init__(self, ttl: float = NONCE_TTL_S, limit: int = MAX_NONCES) -> None:
        self.ttl = ttl
        self.limit = limit
        # Insertion order is expiry order: every entry lives for the same ttl.
        self._expiries: OrderedDict[str, float] = OrderedDict()

    def add(self, nonce: str) -> bool:
        """Remember `nonce`; False if it was already seen or there is no room."""
        now = time.monotonic()
        while self._expiries and next(iter(self._expiries.values())) <= now:
            self._expiries.popitem(last=False)
        if nonce in self._expiries or len(self._expiries) >= self.limit:
            return False
        self._expiries[nonce] = now + self.ttl
        return True


class Verifier:
    """Accepts only the requests its token signed, each once."""

    def __init__(self, token_id: str, token: str) -> None:
        self.token_id = token_id
        self.token = token
        self.nonces = ReplayCache()

    def claim(self, headers: Mapping[str, str]) -> Claim:
        """Check what can be checked from the headers alone; raise Unauthorized."""
        scheme, _, credentials = headers.get("Authorization", "").partition(" ")
        token_id, _, mac = credentials.partition(".")
        if scheme != "Bearer" or not token_id or not mac:
            raise Unauthorized(
                "the request needs an 'Authorization: Bearer {token_id}.{signature}' "
                "header"
            )
        if token_id != self.token_id:
            raise Unauthorized("the token ID is not this daemon's")
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        if not TIMESTAMP.fullmatch(timestamp):
            raise Unauthorized(f"{TIMESTAMP_HEADER} must be a unix time in seconds")
        check_skew(int(timestamp))
        nonce = headers.get(NONCE_HEADER, "")
        if not NONCE.fullmatch(nonce):
            raise Unauthorized(f"{NONCE_HEADER} must be 16 random bytes, base64url")
        return Claim(mac, timestamp, nonce)

    def verify(self, claim: Claim, method: str, path: str, body: bytes) -> None:
        """Check the signature, then spend the nonce; raise Unauthorized."""
        expected = signature(
            self.token, method, path, claim.timestamp, claim.nonce, body
        )
        given = claim.signature.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(expected.encode("ascii"), given):
            raise Unauthorized("the signature does not match the request")
        if not self.nonces.add(claim.nonce):
            raise Unauthorized(
                "the nonce was already used, or too many requests came in the last "
                f"{NONCE_TTL_S} s"
            )


def check_skew(timestamp: int) -> None:
    skew = timestamp - time.time()
    if abs(skew) > MAX_SKEW_S:
        side = "ahead of" if skew > 0 else "behind"
        raise Unauthorized(
            f"the timestamp is stale: {abs(skew):.0f} s {side} the daemon's clock "
            f"(at most {MAX_SKEW_S} s are allowed); check both clocks"
        )
