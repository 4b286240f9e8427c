"""OpenSmogHash2: signatures that a captured request cannot replay (SPEC §11).

``Authorization: OpenSmogHash2 ts=<unix seconds>,seq=<counter>,hash=<hex>`` with
``hash = sha256(f"{ts}:{seq}:".encode() + body + SECRET.encode())``: still one
SHA-256 on the device, but the signature now covers a counter that the server
accepts once. The server keeps, per registration, the highest accepted ``seq`` and
the ``seq`` values accepted in the 64 below it, so retries that arrive out of order
still pass while anything older is refused.

Pure functions: parsing, hashing and the window decision. The store keeps the
window's rows (:mod:`co2logserver.store.sensors`), the ingest path applies it inside
the transaction that stores the readings.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

#: How many ``seq`` values below the highest accepted one are still accepted once.
WINDOW = 64
#: ``seq`` and ``ts`` are stored as 64-bit signed integers.
MAX_COUNTER = 2**63 - 1
SCHEME = "opensmoghash2"
FIELDS = re.compile(
    r"\s*ts\s*=\s*(?P<ts>\d{1,19})\s*,\s*seq\s*=\s*(?P<seq>\d{1,19})\s*,"
    r"\s*hash\s*=\s*(?P<hash>[0-9a-fA-F]{64})\s*"
)


@dataclass(frozen=True)
class Signature:
    """A parsed OpenSmogHash2 value; ``digest`` is lower-case hex."""

    ts: int
    seq: int
    digest: str


class Verdict(Enum):
    """What the window says of one signed request."""

    ACCEPT = "accept"  # new seq: store the readings and remember it
    RETRY = "retry"  # the same seq with the same hash: answer 200, store nothing
    REFUSE = "refuse"  # below the window, or the seq reused with another hash


def is_v2(authorization: str | None) -> bool:
    """Whether an Authorization value uses the OpenSmogHash2 scheme."""
    scheme = (authorization or "").strip().partition(" ")[0]
    return scheme.lower() == SCHEME


def parse(authorization: str) -> Signature | None:
    """Parse ``OpenSmogHash2 ts=…,seq=…,hash=…``; ``None`` when malformed."""
    scheme, _, rest = authorization.strip().partition(" ")
    match = FIELDS.fullmatch(rest) if scheme.lower() == SCHEME else None
    if not match:
        return None
    ts, seq = int(match["ts"]), int(match["seq"])
    if ts > MAX_COUNTER or seq > MAX_COUNTER:
        return None
    return Signature(ts, seq, match["hash"].lower())


def digest(ts: int, seq: int, body: bytes, secret: str) -> str:
    """The OpenSmogHash2 hash: ``sha256("<ts>:<seq>:" + body + SECRET)`` in hex."""
    return hashlib.sha256(f"{ts}:{seq}:".encode() + body + secret.encode()).hexdigest()


def header(ts: int, seq: int, body: bytes, secret: str) -> str:
    """The whole ``Authorization`` value a device sends (for examples and tests)."""
    return f"OpenSmogHash2 ts={ts},seq={seq},hash={digest(ts, seq, body, secret)}"


def signs(signature: Signature, body: bytes, secret: str) -> bool:
    """Whether the signature's hash is right for ``body`` and ``secret``."""
    expected = digest(signature.ts, signature.seq, body, secret)
    return hmac.compare_digest(expected, signature.digest)


def clock_problem(ts: int, now: float, window: float) -> str | None:
    """Why ``ts`` is refused, or ``None``; ``ts = 0`` means the device has no clock."""
    if ts == 0 or abs(ts - now) <= window:
        return None
    return (
        f"ts={ts} is {int(ts - now):+d} s from the server's clock, more than "
        f"CO2LOGSERVER_REPLAY_WINDOW ({window:g} s); set the clock from the "
        "X-OpenSmog-Time header, or send ts=0 if the device has no clock"
    )


def judge(seq: int, digest_hex: str, accepted: Mapping[int, str]) -> Verdict:
    """Decide one request against the accepted ``{seq: hash}`` of its window.

    ``accepted`` holds the highest accepted ``seq`` and those accepted below it
    within :data:`WINDOW`; an empty mapping is a registration that never signed
    with OpenSmogHash2.
    """
    if accepted and seq <= max(accepted) - WINDOW:
        return Verdict.REFUSE
    known = accepted.get(seq)
    if known is None:
        return Verdict.ACCEPT
    return Verdict.RETRY if hmac.compare_digest(known, digest_hex) else Verdict.REFUSE


def forgotten_below(accepted: Mapping[int, str], seq: int) -> int | None:
    """The ``seq`` at and below which rows may go once ``seq`` is accepted, or ``None``.

    Rows below the window change no verdict (:func:`judge` refuses those ``seq``
    values first), so they are dropped only once the window holds twice its width:
    one DELETE per 64 requests instead of one per request.
    """
    if len(accepted) + 1 < 2 * WINDOW:
        return None
    return max([seq, *accepted]) - WINDOW
