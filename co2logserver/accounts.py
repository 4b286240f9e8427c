"""Owner accounts and claims (SPEC §12): the rules, without Flask.

Passwords are hashed with argon2id (``argon2-cffi``, memory-hard). A sensor has at
most one owner; an account claims one with its SUID and a claim code: for a secure
sensor ``sha256(("claim:" + SECRET).encode()).hexdigest()[:10]``, which the device
can compute and show, or a code the operator issued (``claim-code <SUID>``, kept
hashed and good for one claim). Every failed claim gets :data:`CLAIM_REFUSED`, so
a guesser learns nothing about which SUIDs exist or are owned. Claim codes, SECRETs
and passwords are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from co2logserver import auth
from co2logserver.errors import ApiError, BadRequest, ConfigError, Forbidden, NotFound
from co2logserver.store import Store
from co2logserver.store import accounts as sql
from co2logserver.store import sensors as sensor_sql

SIGNUP_MODES = ("open", "invitation", "off")
USERNAME = re.compile(r"[^\s\x00-\x1f\x7f]{3,254}")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
CLAIM_CODE_LENGTH = 10
SESSION_KEY = "session_key"

#: The one answer to every failed claim: no hint which part was wrong.
CLAIM_REFUSED = (
    "No sensor can be claimed with this SUID and claim code. Check both (the code "
    "is 10 characters, 0-9 and a-f) and try again; if the sensor has another owner "
    "or lost its code, ask the operator."
)
#: The one answer to every failed sign-in.
SIGNIN_REFUSED = "Wrong user name or password, or the account is disabled."

_hasher = PasswordHasher()
#: Verified against when the user name is unknown, so both cost the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class User:
    """A signed-in account as Flask-Login sees it."""

    id: int
    username: str
    is_admin: bool
    password_hash: str

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        """Id plus a fingerprint of the password hash: a reset ends old sessions."""
        return f"{self.id}:{session_fingerprint(self.password_hash)}"


def session_fingerprint(password_hash: str) -> str:
    """A short digest of the password hash, kept in the session cookie."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def check_signup_mode(settings: Mapping[str, Any]) -> str:
    """``CO2LOGSERVER_SIGNUP``, lower-cased.

    :raise ConfigError: for anything but open, invitation or off.
    """
    mode = str(settings["CO2LOGSERVER_SIGNUP"]).lower()
    if mode not in SIGNUP_MODES:
        raise ConfigError(
            "CO2LOGSERVER_SIGNUP must be one of open, invitation, off, "
            f"not {settings['CO2LOGSERVER_SIGNUP']!r}"
        )
    return mode


def normalise_username(text: str) -> str:
    """A user name (or e-mail address) as stored: trimmed and lower-cased.

    :raise BadRequest: for one that is too short, too long or has blanks.
    """
    name = (text or "").strip().lower()
    if not USERNAME.fullmatch(name):
        raise BadRequest(
            "The user name must be 3 to 254 characters without spaces "
            "(an e-mail address works)."
        )
    return name


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``.

    :raise BadRequest: for a password shorter than 10 or longer than 1024.
    """
    if not MIN_PASSWORD <= len(password or "") <= MAX_PASSWORD:
        raise BadRequest(
            f"The password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long."
        )
    return _hasher.hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (never raises)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def as_user(row) -> User:
    """The Flask-Login user of an account row."""
    return User(row.id, row.username, bool(row.is_admin), row.password_hash)


def create_user(
    store: Store, username: str, password: str, is_admin: bool = False
) -> int:
    """Create an account; its id.

    :raise BadRequest: for a bad name or password, or a name that is taken.
    """
    name = normalise_username(username)
    password_hash = hash_password(password)
    with store.transaction() as conn:
        user_id = sql.create_user(conn, name, password_hash, is_admin, now())
    if user_id is None:
        raise BadRequest("This user name is taken; choose another.")
    return user_id


def sign_up(
    store: Store, settings: Mapping[str, Any], username: str, password: str, code: str
) -> int:
    """Create an account as ``CO2LOGSERVER_SIGNUP`` allows; its id.

    :raise Forbidden: when sign-up is off, or the invitation code is wrong or used.
    :raise BadRequest: for a bad name or password, or a name that is taken.
    """
    mode = check_signup_mode(settings)
    if mode == "off":
        raise Forbidden("Sign-up is off here; ask the operator for an account.")
    name = normalise_username(username)
    password_hash = hash_password(password)
    with store.transaction() as conn:
        user_id = sql.create_user(conn, name, password_hash, False, now())
        if user_id is None:
            raise BadRequest("This user name is taken; choose another.")
        if mode == "invitation" and not spend_invitation(conn, code, user_id):
            # Raising rolls the new account back with the transaction.
            raise Forbidden("This invitation code is wrong or was used already.")
    return user_id


def authenticate(store: Store, username: str, password: str) -> User | None:
    """The account when the name and password match and it is enabled."""
    try:
        name = normalise_username(username)
    except BadRequest:
        name = None
    row = None
    if name is not None:
        with store.reading() as conn:
            row = sql.user_by_name(conn, name)
    if row is None:
        password_matches(_DUMMY_HASH, password or "")
        return None
    if not password_matches(row.password_hash, password or "") or row.disabled:
        return None
    return as_user(row)


def load_user(store: Store, session_id: str) -> User | None:
    """The account of a session's user id, unless disabled or its password changed."""
    user_id, _, fingerprint = str(session_id).partition(":")
    if not user_id.isdigit():
        return None
    with store.reading() as conn:
        row = sql.user_by_id(conn, int(user_id))
    if row is None or row.disabled:
        return None
    if not hmac.compare_digest(session_fingerprint(row.password_hash), fingerprint):
        return None
    return as_user(row)


def load_user_by_id(store: Store, user_id: int) -> User | None:
    """The account with ``user_id``, or ``None``."""
    with store.reading() as conn:
        row = sql.user_by_id(conn, user_id)
    return None if row is None else as_user(row)


def find_user(store: Store, username: str):
    """The account row named ``username``.

    :raise NotFound: when there is none.
    """
    name = normalise_username(username)
    with store.reading() as conn:
        row = sql.user_by_name(conn, name)
    if row is None:
        raise NotFound(f"no user {name}")
    return row


def set_disabled(store: Store, username: str, disabled: bool) -> None:
    """Disable (or enable) an account; its sessions end at their next request.

    :raise NotFound: when there is no such account.
    """
    row = find_user(store, username)
    with store.transaction() as conn:
        sql.update_user(conn, row.id, disabled=disabled)


def reset_password(store: Store, username: str, password: str) -> None:
    """Set a new password; the account's other sessions end.

    :raise NotFound: when there is no such account.
    :raise BadRequest: for a password that is too short or too long.
    """
    row = find_user(store, username)
    password_hash = hash_password(password)
    with store.transaction() as conn:
        sql.update_user(conn, row.id, password_hash=password_hash)


# ------------------------------------------------------------------- claims


def claim_code(secret: str) -> str:
    """The claim code of a secure sensor: §12's rule on its current SECRET."""
    return hashlib.sha256(("claim:" + secret).encode()).hexdigest()[:CLAIM_CODE_LENGTH]


def code_hash(code: str) -> str:
    """How an operator-issued code (or an invitation) is kept: its SHA-256."""
    return hashlib.sha256((code or "").strip().lower().encode()).hexdigest()


def new_code() -> str:
    """A fresh operator-issued code, in the claim code's own shape (40 bits)."""
    return secrets.token_hex(CLAIM_CODE_LENGTH // 2)


def code_is_right(conn, sensor, code: str) -> bool:
    """Whether ``code`` is the sensor's derived or operator-issued claim code."""
    code = (code or "").strip().lower()
    right = False
    secret = sensor_sql.registration_secret(conn, sensor.registration_id)
    if secret:
        right = hmac.compare_digest(claim_code(secret), code)
    issued = sql.claim_code_hash(conn, sensor.suid)
    if issued:
        right = hmac.compare_digest(issued, code_hash(code)) or right
    return right


def claim(store: Store, user_id: int, suid_text: str, code: str) -> str:
    """Make the sensor ``user_id``'s; its SUID.

    :raise Forbidden: :data:`CLAIM_REFUSED` for a malformed or unknown SUID, a
        wrong code, or a sensor someone else owns (a lost race included).
    """
    try:
        suid = auth.parse_suid(suid_text.strip())
    except (ApiError, AttributeError):
        raise Forbidden(CLAIM_REFUSED) from None
    with store.transaction() as conn:
        sensor = sensor_sql.get_sensor(conn, suid)
        if sensor is None or not code_is_right(conn, sensor, code):
            raise Forbidden(CLAIM_REFUSED)
        if not sql.add_owner(conn, suid, user_id, now()):
            if sql.owner_of(conn, suid) != user_id:
                raise Forbidden(CLAIM_REFUSED)
        sql.forget_claim_code(conn, suid)
    return suid


def issue_claim_code(store: Store, suid_text: str) -> str:
    """A new operator-issued claim code for an existing sensor (replaces the last).

    :raise BadRequest: for a malformed SUID.
    :raise NotFound: for a sensor that never registered nor posted.
    """
    suid = auth.parse_suid(suid_text)
    code = new_code()
    with store.transaction() as conn:
        if sensor_sql.get_sensor(conn, suid) is None:
            raise NotFound(f"no sensor {suid}")
        sql.set_claim_code(conn, suid, code_hash(code), now())
    return code


def transfer(store: Store, suid_text: str, username: str) -> str:
    """Give a sensor to the account ``username`` (the operator's transfer); SUID.

    :raise NotFound: for an unknown sensor or account.
    """
    suid = auth.parse_suid(suid_text)
    row = find_user(store, username)
    with store.transaction() as conn:
        if sensor_sql.get_sensor(conn, suid) is None:
            raise NotFound(f"no sensor {suid}")
        sql.set_owner(conn, suid, row.id, now())
    return suid


def invite(store: Store) -> str:
    """A new invitation code for ``CO2LOGSERVER_SIGNUP = "invitation"``.

    ``<id>-<token>``: the id finds the row, the token is compared with its hash in
    constant time.
    """
    token = secrets.token_hex(12)
    with store.transaction() as conn:
        invitation_id = sql.add_invitation(conn, code_hash(token), now())
    return f"{invitation_id}-{token}"


def spend_invitation(conn, code: str, user_id: int) -> bool:
    """Use the invitation ``code`` for ``user_id``; whether it was right and unused."""
    number, _, token = (code or "").strip().partition("-")
    if not number.isdigit() or len(number) > 18:
        return False
    stored = sql.unused_invitation(conn, int(number))
    if stored is None or not hmac.compare_digest(stored, code_hash(token)):
        return False
    return sql.use_invitation(conn, int(number), user_id)


def session_key(store: Store) -> str:
    """The installation's session signing key, generated on first use.

    Kept in the database so every worker and host signs alike and sessions survive
    restarts; ``ON CONFLICT DO NOTHING`` lets the first of racing workers win.
    """
    with store.transaction() as conn:
        key = sql.installation_value(conn, SESSION_KEY)
        if key is None:
            key = sql.keep_installation_value(conn, SESSION_KEY, secrets.token_hex(32))
    return key


def now() -> int:
    """The time in whole UNIX seconds."""
    return int(time.time())
