"""The sensemapi account, with each workaround co2logserver needs.

sensemapi 0.5.0 (https://gitlab.com/tue-umphy/co2mofetten/software/python3-sensemapi;
``pyproject.toml`` pins ``<0.6`` because these lean on its internals) needs:

* ``SenseMapAccount.post_measurements`` sends no box access token, which OSEM
  demands for boxes with ``useAuth`` (the default of new boxes), and
  ``get_own_boxes`` never sees those tokens: :meth:`OsemAccount.own_boxes` reads
  them from ``GET /users/me/boxes`` and :meth:`OsemAccount.box_authorization`
  sends them;
* ``dataframe_to_csv_for_upload`` refuses two measurements of one sensor in one
  call and needs a pandas DataFrame, while OSEM takes up to 2500 of any sensors:
  :meth:`OsemAccount.dataframe_to_csv_for_upload` writes our own lines;
* ``client.py::SenseMapClient.request`` sleeps on HTTP 429 for however long OSEM
  names, inside our forwarding thread, and crashes with a JSON or ``TypeError`` on
  error bodies without a message, losing the status: a response hook
  (:meth:`OsemAccount._screen_response`) raises first;
* ``new_box`` asserts ``current_lat``/``current_lon`` are truthy, refusing 0.0
  (the client nudges zeros, see :func:`co2logserver.forwarding.client.not_zero`);
* its debug log prints tokens and its ``repr`` the password
  (:func:`guard_sensemapi_logs`, :meth:`OsemAccount.__repr__`);
* its ``__del__`` signs out over the network and lets some errors escape.

:func:`osem_errors` turns whatever sensemapi or requests raise into the errors of
:mod:`co2logserver.forwarding.errors`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from posixpath import join as urljoin
from typing import Any, Protocol

import requests
from sensemapi import errors as sensemapi_errors
from sensemapi.account import SenseMapAccount

from co2logserver.forwarding.errors import OsemError, OsemRefused, OsemRetryable, scrub

logger = logging.getLogger(__name__)

PREFIX = "CO2LOGSERVER_"


class CsvLine(Protocol):
    """A measurement that writes itself as a line of OSEM's CSV upload format."""

    def csv_line(self) -> str:
        """``sensorId,value,createdAt[,lng,lat[,height]]``."""


class OsemAccount(SenseMapAccount):
    """A sensemapi account with the fixes co2logserver needs (see module docs)."""

    last_forbidden_reason: str | None = None

    @property
    def session(self) -> requests.Session:
        """sensemapi's HTTP session, with :meth:`_screen_response` hooked in."""
        session = SenseMapAccount.session.fget(self)
        hooks = session.hooks["response"]
        if self._screen_response not in hooks:
            hooks.append(self._screen_response)
        return session

    @session.setter
    def session(self, new: requests.Session) -> None:
        """Replace the session the way sensemapi does."""
        SenseMapAccount.session.fset(self, new)

    def _screen_response(self, response: requests.Response, *args, **kwargs):
        """Raise HTTP errors as OsemError before sensemapi mis-parses or sleeps.

        403 goes through: sensemapi refreshes tokens or signs in again on it.
        """
        status = response.status_code
        if status < 400:
            return response
        reason = response_reason(response)
        if status == 403:
            self.last_forbidden_reason = reason
            return response
        if status == 429 or status >= 500:
            raise OsemRetryable(f"OpenSenseMap answered {status}: {reason}", status)
        raise OsemRefused(f"OpenSenseMap answered {status}: {reason}", status)

    @classmethod
    def dataframe_to_csv_for_upload(
        cls, measurements: Iterable[CsvLine], discard_incomplete: bool = False
    ) -> str:
        """Write measurements as OSEM's CSV; several per sensor are fine for OSEM."""
        return "".join(m.csv_line() + "\n" for m in measurements)

    @SenseMapAccount.refresh_and_retry_on_outdated_tokens
    def own_boxes(self) -> list[dict[str, Any]]:
        """All boxes of the account with their access tokens, page by page."""
        boxes: list[dict[str, Any]] = []
        seen: set[str] = set()
        for page in range(10_000):
            data = self._own_boxes_page(page)
            fresh = [b for b in data.get("boxes", []) if b.get("_id") not in seen]
            boxes += fresh
            seen.update(b.get("_id") for b in fresh)
            total = data.get("boxes_count")
            if not fresh or not isinstance(total, int) or len(boxes) >= total:
                break
        return boxes

    def _own_boxes_page(self, page: int) -> dict[str, Any]:
        """One page of ``GET /users/me/boxes`` (older APIs ignore ``page``)."""
        response = self.request(
            "get",
            urljoin(self.api, "users/me/boxes"),
            headers=self.authorization_header,
            params={"page": page},
        )
        answer = response.json()
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("boxes"), list):
            raise sensemapi_errors.OpenSenseMapAPIResponseError(
                "GET users/me/boxes did not answer a list of boxes"
            )
        return data

    @contextlib.contextmanager
    def box_authorization(self, access_token: str | None) -> Iterator[None]:
        """Send a box's access token with the requests made inside (measurements)."""
        if not access_token:
            yield
            return
        headers = self.session.headers
        headers["Authorization"] = access_token
        try:
            yield
        finally:
            headers.pop("Authorization", None)

    def __repr__(self) -> str:
        """Name the account without sensemapi's password and tokens."""
        login = self.email or self.username
        return f"{type(self).__name__}(login={login!r}, api={self.api!r})"

    def __del__(self) -> None:
        """Sign out quietly; OSEM may be unreachable while the process ends."""
        with contextlib.suppress(Exception):
            super().__del__()


def response_reason(response: requests.Response) -> str:
    """OSEM's error message from a response, whatever shape the body has."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    if isinstance(body, str) and body:
        return body
    text = (response.text or "").strip()
    return text[:200] if text else str(response.reason or "no reason given")


def make_account(settings: Mapping[str, Any]) -> SenseMapAccount:
    """Build the OSEM account from the settings; no disk caches unless asked.

    Login keys may be ``None`` (sensemapi then reads ``SENSEMAP_*`` variables).
    """
    guard_sensemapi_logs(settings[PREFIX + "SENSEMAPI_LOGLEVEL"])
    timeout = float(settings[PREFIX + "OSEM_TIMEOUT"])
    account = OsemAccount(
        email=settings[PREFIX + "OSEM_EMAIL"] or None,
        username=settings[PREFIX + "OSEM_USERNAME"] or None,
        password=settings[PREFIX + "OSEM_PASSWORD"] or None,
        api=settings[PREFIX + "OSEM_API"] or None,
        cache_password=bool(settings[PREFIX + "OSEM_CACHE_PASSWORD"]),
        connection_timeout=timeout,
        response_timeout=timeout,
    )
    enable_auth_cache(account, settings)
    enable_request_cache(account, settings)
    return account


def cache_directory(setting: Any) -> str:
    """A cache setting's folder: a path as given, ``True`` the XDG cache folder."""
    if isinstance(setting, (str, os.PathLike)):
        return os.fspath(setting)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "co2logserver")


def cache_name(settings: Mapping[str, Any], what: str) -> str:
    """A file name per server, so that two servers never share a cache."""
    server = re.sub(r"\W+", "-", str(settings[PREFIX + "NAME"]))
    return f"{server.strip('-').lower() or 'co2logserver'}-osem-{what}"


def enable_auth_cache(account: SenseMapAccount, settings: Mapping[str, Any]) -> None:
    """Keep the sign-in on disk if ``CO2LOGSERVER_OSEM_AUTH_CACHE`` asks for it."""
    setting = settings[PREFIX + "OSEM_AUTH_CACHE"]
    if not setting:
        return
    from sensemapi.cache import SQLiteAuthentiCache

    try:
        account.auth_cache = SQLiteAuthentiCache(
            directory=cache_directory(setting), name=cache_name(settings, "auth")
        )
    except (OSError, sqlite3.Error) as error:
        account.auth_cache = None
        logger.warning("OpenSenseMap sign-in is not cached on disk: %s", error)


def enable_request_cache(account: SenseMapAccount, settings: Mapping[str, Any]) -> None:
    """Cache GET requests on disk if asked and CacheControl is installed."""
    setting = settings[PREFIX + "OSEM_REQUEST_CACHE"]
    if not setting:
        return
    try:
        from cachecontrol.caches.file_cache import FileCache
    except ImportError:
        logger.warning(
            "CO2LOGSERVER_OSEM_REQUEST_CACHE is on but the package "
            "'CacheControl[filecache]' is not installed: requests are not cached"
        )
        return
    folder = os.path.join(cache_directory(setting), cache_name(settings, "requests"))
    account.request_cache = FileCache(folder)


class RedactSecrets(logging.Filter):
    """Log filter that scrubs secrets sensemapi prints in its debug output."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message if it holds a secret; never drop it."""
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def guard_sensemapi_logs(level: int | str | None) -> None:
    """Set sensemapi's log level and scrub secrets from every sensemapi logger."""
    base = logging.getLogger("sensemapi")
    if level is not None:
        base.setLevel(level.upper() if isinstance(level, str) else level)
    names = [n for n in logging.root.manager.loggerDict if n.startswith("sensemapi.")]
    for name in ["sensemapi", *names]:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in target.filters):
            target.addFilter(RedactSecrets())


_SIGN_IN_ERRORS = (
    sensemapi_errors.NoCredentialsError,
    sensemapi_errors.OpenSenseMapAPIOutdatedTokenError,
    sensemapi_errors.OpenSenseMapAPIInvalidCredentialsError,
)


@contextlib.contextmanager
def osem_errors(account: OsemAccount) -> Iterator[None]:
    """Raise every sensemapi or requests failure as OsemRetryable or OsemRefused."""
    try:
        yield
    except OsemError:
        raise
    except requests.RequestException as error:
        raise OsemRetryable(f"OpenSenseMap not reachable: {error}") from error
    except _SIGN_IN_ERRORS as error:
        message = (
            f"OpenSenseMap sign-in failed ({error}); check CO2LOGSERVER_OSEM_EMAIL "
            "or CO2LOGSERVER_OSEM_USERNAME and CO2LOGSERVER_OSEM_PASSWORD"
        )
        raise OsemRetryable(message) from error
    except sensemapi_errors.OpenSenseMapAPITooManyRequestsError as error:
        raise OsemRetryable(f"OpenSenseMap rate limit: {error}", 429) from error
    except sensemapi_errors.OpenSenseMapAPIAuthenticationError as error:
        reason = account.last_forbidden_reason or str(error)
        raise OsemRefused(f"OpenSenseMap answered 403: {reason}", 403) from error
    except sensemapi_errors.SenseMapiError as error:
        raise OsemRetryable(f"unexpected OpenSenseMap answer: {error}") from error
