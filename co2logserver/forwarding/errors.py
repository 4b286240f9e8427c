"""What can go wrong when forwarding, and the one rule that keeps secrets out of it.

Every OpenSenseMap failure reaches the worker as one of three exceptions it acts on:

* :class:`OsemRetryable` - try again later (OSEM unreachable, 5xx, 429, sign-in);
* :class:`OsemRefused` - OSEM refuses this data for good (a 4xx to the data POST or
  to creating the box for it), with its reason; a 4xx to a call about the account
  or its boxes (the box list, adding sensors, texts) is no verdict on the data and
  is :class:`OsemRetryable`;
* :class:`OsemNoLocation` - a senseBox must be created but no position is known,
  so the data has to wait.

They live apart from :mod:`co2logserver.forwarding.client` so that the worker and
the planner can name them without importing ``sensemapi`` (an optional extra).
:func:`scrub` is the one owner of redaction: the worker stores reasons with it, the
dashboard shows the stored reason with it and sensemapi's log lines go through it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class OsemError(Exception):
    """Base of all forwarding failures; ``status`` is OSEM's HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        """Keep the message for the caller's logs and the status for decisions."""
        super().__init__(message)
        self.message = message
        self.status = status


class OsemRetryable(OsemError):
    """OSEM is unreachable, overloaded, rate limiting or refusing our sign-in."""


class OsemRefused(OsemError):
    """OSEM refuses this data for good (a 4xx to the data POST or to creating its
    box); the message gives its reason."""


class OsemNoLocation(OsemError):
    """A new senseBox needs a position and none is known yet: keep the data waiting."""


def most_urgent(failures: list[OsemError]) -> OsemError:
    """The failure the caller must act on first: waiting beats dropping the data."""
    waiting = [f for f in failures if isinstance(f, OsemNoLocation)]
    return (waiting or failures)[0]


_SECRET_VALUE = re.compile(
    r"""(?P<key>["']?(?:token|refreshToken|refresh_token|access_token|password"""
    r"""|Authorization)["']?\s*[:=]\s*)(?P<quote>["'])(?:(?!(?P=quote)).)*(?P=quote)""",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(Bearer\s+)[\w.~+/=-]+", re.IGNORECASE)


def scrub(text: str, secrets: Iterable[object] = ()) -> str:
    """``text`` with each of ``secrets`` and every token, password and
    Authorization value replaced by ``***``.

    ``secrets`` are the configured credentials (password, login): they can appear
    anywhere, for example in an error sensemapi echoes, so they go verbatim first.
    """
    for secret in secrets:
        if secret:
            text = text.replace(str(secret), "***")
    text = _SECRET_VALUE.sub(r"\g<key>\g<quote>***\g<quote>", text)
    return _BEARER.sub(r"\1***", text)


#: The name sensemapi's log filter and the 0.1.2-era tests know.
redact = scrub

__all__ = [
    "OsemError",
    "OsemNoLocation",
    "OsemRefused",
    "OsemRetryable",
    "most_urgent",
    "redact",
    "scrub",
]
