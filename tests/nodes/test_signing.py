import base64
import hashlib
import hmac

import pytest
from django.core.cache.backends.locmem import LocMemCache

from nodes.signing import (
    NONCE_SECONDS,
    SignatureRefused,
    sign,
    verify,
)

TOKEN_ID = "abcdefgh12345678"
TOKEN = "q2VfTj0Yc8w1mZkR4pLxN7sHdA9uE3bG6tWyKoJ5iQc"  # 43 characters
OTHER_TOKEN = "b" * 43
NOW = 1_760_000_000
NONCE = "AAECAwQFBgcICQoLDA0ODw"  # bytes 0..15, base64url without padding
TARGET = "/api/servers/abc/files/list?directory=%2Fworld%20one&page=2"
BODY = b'{"paths": ["world/level.dat"]}'


def expected_signature(
    token: str, method: str, target: str, timestamp: int, nonce: str, body: bytes
) -> str:
    """The signature as PROTOCOL.md defines it, computed without nodes.signing."""
    digest = hashlib.sha256(body).hexdigest()
    message = f"{method}\n{target}\n{timestamp}\n{nonce}\n{digest}".encode()
    mac = hmac.new(token.encode("ascii"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


class Nonces:
    """A nonce store that records what it was asked."""

    def __init__(self) -> None:
        self.timeouts: dict[str, int] = {}

    def add(self, key: str, value: int, timeout: int) -> bool:
        if key in self.timeouts:
            return False
        self.timeouts[key] = timeout
        return True


def check(
    headers: dict[str, str],
    method: str = "POST",
    target: str = TARGET,
    body: bytes = BODY,
    *,
    nonces: Nonces | LocMemCache | None = None,
    now: float = NOW,
    tokens: dict[str, str] | None = None,
) -> str:
    known = {TOKEN_ID: TOKEN} if tokens is None else tokens
    return verify(
        headers,
        method,
        target,
        body,
        tokens=known.get,
        nonces=Nonces() if nonces is None else nonces,
        clock=lambda: now,
    )


def signed(**changes: object) -> dict[str, str]:
    values: dict = {
        "token_id": TOKEN_ID,
        "token": TOKEN,
        "method": "POST",
        "target": TARGET,
        "body": BODY,
        "timestamp": NOW,
        "nonce": NONCE,
    } | changes
    return sign(**values)


class TestSigning:
    def test_it_signs_as_the_protocol_says(self) -> None:
        headers = signed()

        # The three headers, the signature computed independently.
        mac = expected_signature(TOKEN, "POST", TARGET, NOW, NONCE, BODY)
        assert headers == {
            "Authorization": f"Bearer {TOKEN_ID}.{mac}",
            "X-Stellar-Timestamp": str(NOW),
            "X-Stellar-Nonce": NONCE,
        }
        assert len(mac) == 43
        assert TOKEN not in str(headers)

    def test_it_signs_an_empty_body_for_a_get(self) -> None:
        headers = sign(
            TOKEN_ID, TOKEN, "get", "/api/system", timestamp=NOW, nonce=NONCE
        )

        mac = expected_signature(TOKEN, "GET", "/api/system", NOW, NONCE, b"")
        assert headers["Authorization"] == f"Bearer {TOKEN_ID}.{mac}"

    def test_it_makes_a_fresh_nonce_and_takes_the_time(self) -> None:
        first, second = (
            sign(TOKEN_ID, TOKEN, "GET", "/"),
            sign(TOKEN_ID, TOKEN, "GET", "/"),
        )

        # 16 random bytes, base64url without padding; unix seconds.
        assert first["X-Stellar-Nonce"] != second["X-Stellar-Nonce"]
        nonce = first["X-Stellar-Nonce"]
        assert len(nonce) == 22 and "=" not in nonce
        assert len(base64.urlsafe_b64decode(nonce + "==")) == 16
        assert first["X-Stellar-Timestamp"].isdigit()

    def test_it_accepts_a_request_signed_right(self) -> None:
        assert check(signed()) == TOKEN_ID

    def test_it_accepts_a_timestamp_inside_the_window(self) -> None:
        assert check(signed(timestamp=NOW - 60)) == TOKEN_ID
        assert check(signed(timestamp=NOW + 60)) == TOKEN_ID

    @pytest.mark.parametrize(
        ("request_changes", "header_changes"),
        [
            ({"method": "PUT"}, {}),
            ({"target": TARGET.replace("abc", "abd")}, {}),
            ({"target": TARGET.replace("page=2", "page=3")}, {}),
            ({"target": TARGET.replace("%2F", "/")}, {}),
            ({"target": TARGET.split("?")[0]}, {}),
            ({"body": BODY.replace(b"level", b"lever")}, {}),
            ({"body": b""}, {}),
            ({}, {"X-Stellar-Timestamp": str(NOW + 1)}),
            ({}, {"X-Stellar-Nonce": "AAECAwQFBgcICQoLDA0OEA"}),
        ],
        ids=[
            "method",
            "path",
            "query",
            "escapes",
            "no query",
            "body",
            "no body",
            "timestamp",
            "nonce",
        ],
    )
    def test_it_refuses_a_request_that_differs_from_what_was_signed(
        self, request_changes: dict, header_changes: dict
    ) -> None:
        with pytest.raises(SignatureRefused, match="signature does not match"):
            check(signed() | header_changes, **request_changes)

    def test_it_refuses_a_request_signed_with_another_token(self) -> None:
        with pytest.raises(SignatureRefused, match="signature does not match"):
            check(signed(token=OTHER_TOKEN))

    def test_it_refuses_a_signature_one_character_off(self) -> None:
        headers = signed()
        good = headers["Authorization"]
        last = "A" if good[-1] != "A" else "B"
        headers["Authorization"] = good[:-1] + last

        with pytest.raises(SignatureRefused) as caught:
            check(headers)
        # The expected signature is never told.
        assert good.split(".")[1] not in str(caught.value)

    def test_it_names_a_stale_timestamp_and_by_how_much(self) -> None:
        with pytest.raises(SignatureRefused) as caught:
            check(signed(timestamp=NOW - 75))
        assert "timestamp is 75 seconds behind" in str(caught.value)

        with pytest.raises(SignatureRefused) as caught:
            check(signed(timestamp=NOW + 3600))
        assert "timestamp is 3600 seconds ahead of" in str(caught.value)

    def test_it_refuses_a_replayed_nonce(self) -> None:
        nonces = Nonces()
        check(signed(), nonces=nonces)

        with pytest.raises(SignatureRefused, match="nonce was already used"):
            check(signed(), nonces=nonces)

    def test_it_remembers_a_nonce_for_120_seconds_per_token_id(self) -> None:
        nonces = Nonces()
        check(signed(), nonces=nonces)

        # One key naming the token ID and the nonce, kept for 120 s.
        assert NONCE_SECONDS == 120
        assert list(nonces.timeouts.values()) == [120]
        [key] = nonces.timeouts
        assert TOKEN_ID in key and NONCE in key

    def test_it_lets_two_nodes_use_the_same_nonce(self) -> None:
        nonces = LocMemCache("signing-tests", {})
        tokens = {TOKEN_ID: TOKEN, "zyxwvuts87654321": OTHER_TOKEN}
        other = signed(token_id="zyxwvuts87654321", token=OTHER_TOKEN)

        assert check(signed(), nonces=nonces, tokens=tokens) == TOKEN_ID
        assert check(other, nonces=nonces, tokens=tokens) == "zyxwvuts87654321"
        with pytest.raises(SignatureRefused, match="nonce"):
            check(other, nonces=nonces, tokens=tokens)

    def test_it_does_not_remember_the_nonce_of_a_bad_signature(self) -> None:
        nonces = Nonces()
        with pytest.raises(SignatureRefused):
            check(signed(token=OTHER_TOKEN), nonces=nonces)

        assert nonces.timeouts == {}

    def test_it_refuses_an_unknown_token_id(self) -> None:
        with pytest.raises(SignatureRefused, match="No node has the token ID"):
            check(signed(token_id="0000000000000000"))

    @pytest.mark.parametrize(
        ("headers", "named"),
        [
            ({}, "Authorization"),
            ({"Authorization": "Basic dXNlcjpwYXNz"}, "Authorization"),
            ({"Authorization": f"Bearer {TOKEN_ID}"}, "Authorization"),
            ({"Authorization": "Bearer x.y"}, "Authorization"),
            ({"Authorization": "Bearer ünïcode.ÿ" + "a" * 41}, "Authorization"),
            ({"X-Stellar-Timestamp": ""}, "X-Stellar-Timestamp"),
            ({"X-Stellar-Timestamp": "1.5"}, "X-Stellar-Timestamp"),
            ({"X-Stellar-Timestamp": "-5"}, "X-Stellar-Timestamp"),
            ({"X-Stellar-Nonce": ""}, "X-Stellar-Nonce"),
            ({"X-Stellar-Nonce": "short"}, "X-Stellar-Nonce"),
            ({"X-Stellar-Nonce": "AAECAwQFBgcICQoLDA0ODw=="}, "X-Stellar-Nonce"),
        ],
    )
    def test_it_names_a_malformed_header(self, headers: dict, named: str) -> None:
        sent = signed() | headers if headers else {}

        with pytest.raises(SignatureRefused, match=named):
            check(sent)
