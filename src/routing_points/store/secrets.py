"""Token secrets: generated once, shown once, stored only as a SHA-256 digest.

A fast digest is enough: the secrets are 256 random bits, so there is nothing to
brute-force, and lookups by digest keep the comparison off the secret itself.
"""

from __future__ import annotations

import hashlib
import secrets


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()
