"""Checksums, OpenSmogHash, SUIDs and secrets: the project's cryptography in one place.

Pure functions: no Flask. Every comparison of a digest uses ``hmac.compare_digest``
so the time it takes does not tell an attacker how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence

from co2logserver.config_default import (
    CO2LOGSERVER_SALTED_CHECKSUM_HEADER_REGEX as SALTED_HEADER,
)
from co2logserver.errors import BadRequest, Forbidden

SUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
HEX64 = re.compile(r"[0-9a-f]{64}", re.IGNORECASE)
OPENSMOG_SCHEME = "opensmoghash"

#: The variable-length hashes: their hex digest may have any even length.
SHAKES = {"shake_128": hashlib.shake_128, "shake_256": hashlib.shake_256}

#: Preferred algorithms for examples: common on microcontrollers.
PREFERRED_ALGORITHMS = ("md5", "sha1", "sha256", "sha512")


def salted_digest(payload: bytes, salt: str, algorithm: str) -> str:
    """Return the hex digest of ``payload`` with ``salt`` appended."""
    digest = hashlib.new(algorithm)
    digest.update(payload)
    digest.update(salt.encode())
    return digest.hexdigest()


def salted_checksums(
    headers: Iterable[tuple[str, str]], pattern: re.Pattern[str] = SALTED_HEADER
) -> dict[str, str]:
    """Return ``{algorithm: digest}`` of every ``Content-<ALG>-Salted`` header.

    ``pattern`` is ``CO2LOGSERVER_SALTED_CHECKSUM_HEADER_REGEX``: a header whose whole
    name it matches is a checksum, its group ``algorithm`` names the hash. Names of
    algorithms outside ``hashlib.algorithms_guaranteed`` are ignored, as any other
    unknown header would be.
    """
    checksums = {}
    for name, value in headers:
        match = pattern.fullmatch(name)
        if match and match["algorithm"].lower() in hashlib.algorithms_guaranteed:
            checksums[match["algorithm"].lower()] = value.strip().lower()
    return checksums


def digest_is_wellformed(digest: str, algorithm: str) -> bool:
    """Whether ``digest`` is hex of the algorithm's length (shake: any length)."""
    hasher = hashlib.new(algorithm)
    if algorithm.startswith("shake_"):
        return bool(re.fullmatch(r"(?:[0-9a-f]{2})+", digest))
    return bool(re.fullmatch(f"[0-9a-f]{{{hasher.digest_size * 2}}}", digest))


def matching_salt(payload: bytes, algorithm: str, digest: str, salts: Sequence[str]):
    """Return the salt that makes ``digest`` match, else ``None``."""
    if not digest_is_wellformed(digest, algorithm):
        return None
    for salt in salts:
        if algorithm in SHAKES:
            expected = SHAKES[algorithm](payload + salt.encode())
            candidate = expected.hexdigest(len(digest) // 2)
        else:
            candidate = salted_digest(payload, salt, algorithm)
        if hmac.compare_digest(candidate, digest):
            return salt
    return None


def match_checksums(
    payload: bytes, checksums: Mapping[str, str], salts: Sequence[str]
) -> dict[str, str | None]:
    """Map each given algorithm to its matching salt, or ``None`` when none matched."""
    return {
        algorithm: matching_salt(payload, algorithm, digest, salts)
        for algorithm, digest in checksums.items()
    }


def authorize(
    matches: Mapping[str, str | None],
    required: bool,
    checker: Callable[[dict], object],
) -> None:
    """Apply ``CO2LOGSERVER_AUTH_CHECKER`` when authentication is required.

    :raise Forbidden: 403 when checksums are required but missing or refused.
    """
    if not required:
        return
    hint = (
        "Send a header Content-<ALGORITHM>-Salted (e.g. Content-SHA256-Salted) with "
        "the "
        "hex digest of the body (for GET: the path with query) with a pre-shared salt "
        "appended; see /uploadhelp"
    )
    if not matches:
        raise Forbidden(f"Authentication required. {hint}")
    if not checker(dict(matches)):
        raise Forbidden(
            f"The salted checksums do not authenticate this request. {hint}"
        )


def checksum_columns(matches: Mapping[str, str | None]) -> tuple[str, str]:
    """Return the comma-joined matched and failed algorithm names."""
    matched = ",".join(sorted(a for a, salt in matches.items() if salt is not None))
    failed = ",".join(sorted(a for a, salt in matches.items() if salt is None))
    return matched, failed


def parse_suid(text: str) -> str:
    """Return the canonical lowercase SUID.

    :raise BadRequest: when ``text`` is not an RFC 4122 UUID in 8-4-4-4-12 form.
    """
    if not SUID.fullmatch(text):
        raise BadRequest(
            f"{text[:64]!r} is not a SUID; use a UUID like "
            "123e4567-e89b-12d3-a456-426655440000"
        )
    return text.lower()


def new_secret() -> str:
    """Return a fresh SECRET: 256 random bits as 64 lowercase hex characters."""
    return secrets.token_hex(32)


def opensmog_hash(body: bytes, secret: str) -> str:
    """Return ``sha256(body + SECRET)`` in hex, the OpenSmogHash of a body."""
    return hashlib.sha256(body + secret.encode("ascii")).hexdigest()


def opensmog_hash_matches(authorization: str, body: bytes, secret: str | None) -> bool:
    """Whether an ``Authorization: OpenSmogHash <hex>`` value signs ``body``.

    Another scheme, a value that is not 64 hex characters, or a registration
    without a SECRET (``None``) never matches.
    """
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if secret is None:
        return False
    if scheme.lower() != OPENSMOG_SCHEME or not HEX64.fullmatch(value):
        return False
    return hmac.compare_digest(opensmog_hash(body, secret), value.lower())


def bearer_token_allowed(authorization: str | None, tokens: Sequence[str]) -> bool:
    """Whether ``Authorization: Bearer <token>`` names one of the admin ``tokens``."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return False
    wanted = value.strip().encode()
    # Compare with every token so the time taken does not tell which one was close.
    found = False
    for token in tokens:
        found |= hmac.compare_digest(token.encode(), wanted)
    return found
