"""Daemon credentials: generating them and keeping the token encrypted at rest.

A node is named by a public token ID and authenticated by a secret token. The panel
must be able to sign with the token, so it keeps it encrypted with the keys in
`settings.ENCRYPTION_KEYS` rather than hashed.
"""

import secrets
import string
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

TOKEN_ID_ALPHABET = string.ascii_lowercase + string.digits
TOKEN_ID_LENGTH = 16


class CredentialsUnreadable(Exception):
    """A stored token cannot be decrypted with any of the configured keys."""


def generate_token_id() -> str:
    return "".join(secrets.choice(TOKEN_ID_ALPHABET) for _ in range(TOKEN_ID_LENGTH))


def generate_token() -> str:
    """32 random bytes, base64url without padding: 43 characters."""
    return secrets.token_urlsafe(32)


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def encrypt(token: str) -> str:
    return _fernet(tuple(settings.ENCRYPTION_KEYS)).encrypt(token.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        plain = _fernet(tuple(settings.ENCRYPTION_KEYS)).decrypt(ciphertext.encode())
    except InvalidToken:
        raise CredentialsUnreadable(
            "the daemon token cannot be decrypted with ENCRYPTION_KEY; was the key "
            "changed? Put the old key after the new one, or rotate the node's token."
        ) from None
    return plain.decode()
