"""Who may write for a secure sensor: the authorization rules of SPEC §6 and §11.

Applied by :mod:`co2logserver.ingest` inside the write transaction, because the
OpenSmogHash2 window they update must change together with the readings it admits.
Readings: the OpenSmogHash or OpenSmogHash2 of the current SECRET, never on the rogue
route, no downgrade once OpenSmogHash2 was used. Re-registration: by default only a
PUT signed with the current SECRET (a device rotating it). No Flask here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from co2logserver import auth, replay
from co2logserver.errors import BadOpenSmogHash, Conflict, Forbidden, HashMismatch
from co2logserver.store import sensors as sensor_sql
from co2logserver.store import signed as signed_sql


@dataclass(frozen=True)
class Credentials:
    """What deciding a sensor's post needs of its current registration.

    Read in the write transaction, and kept by each worker (``Store.registrations``)
    so that signed posts can still be verified while the database is away (SPEC §10).
    """

    registration_id: int
    secure: bool
    secret: str | None = None
    signs_v2: bool = False


def credentials_of(conn, sensor) -> Credentials:
    """The credentials of a sensor row (its SECRET only when it is secure)."""
    if not sensor.secure:
        return Credentials(sensor.registration_id, False)
    secret, signs_v2 = sensor_sql.registration_credentials(conn, sensor.registration_id)
    return Credentials(sensor.registration_id, True, secret, signs_v2)


def check_signature(
    settings: Mapping,
    credentials: Credentials,
    authorization: str | None,
    signed: bytes,
    rogue_route: bool,
    now: float,
) -> replay.Signature | None:
    """Every rule for a secure sensor's post that needs no database.

    Returns the OpenSmogHash2 signature whose ``seq`` the window must still judge,
    or ``None`` for a plain OpenSmogHash that matched.

    :raise Forbidden: 403 on the rogue route or without a hash.
    :raise BadOpenSmogHash: 401 for a wrong, malformed, stale or downgraded one.
    """
    if rogue_route:
        raise Forbidden(
            "This sensor is registered as secure; post its readings to "
            "/v1/sensors/<SUID>/readings with an OpenSmogHash"
        )
    if authorization is None:
        raise Forbidden(
            "This sensor is registered as secure: send "
            "Authorization: OpenSmogHash2 ts=<unix seconds>,seq=<counter>,"
            "hash=<sha256(ts:seq: + body + SECRET)> (or OpenSmogHash "
            "<sha256(body + SECRET)>)"
        )
    secret = credentials.secret
    if replay.is_v2(authorization):
        return checked_v2(settings, authorization, signed, secret, now)
    if credentials.signs_v2:
        raise BadOpenSmogHash(
            "This registration has signed with OpenSmogHash2; plain OpenSmogHash is "
            "refused for it (a downgrade would allow replays)"
        )
    if not auth.opensmog_hash_matches(authorization, signed, secret):
        raise HashMismatch(
            "The OpenSmogHash does not match: send sha256 of the exact body bytes as "
            "sent with the SECRET (64 hex characters) appended, as hex"
        )
    return None


def checked_v2(settings, authorization, signed, secret, now) -> replay.Signature:
    """An OpenSmogHash2 whose hash and clock are right (SPEC §11)."""
    signature = replay.parse(authorization)
    if signature is None:
        raise BadOpenSmogHash(
            "Malformed OpenSmogHash2: send OpenSmogHash2 ts=<unix seconds or 0>,"
            "seq=<counter>,hash=<64 hex characters>"
        )
    if not replay.signs(signature, signed, secret):
        raise HashMismatch(
            'The OpenSmogHash2 does not match: send sha256 of f"{ts}:{seq}:" + the '
            "exact body bytes as sent + the SECRET, as hex"
        )
    problem = replay.clock_problem(
        signature.ts, now, settings["CO2LOGSERVER_REPLAY_WINDOW"]
    )
    if problem:
        raise BadOpenSmogHash(problem)
    return signature


def check_secure_access(
    conn,
    credentials: Credentials,
    settings: Mapping,
    authorization: str | None,
    signed: bytes,
    rogue_route: bool,
    now: float,
) -> bool:
    """A secure sensor's data comes only through the verified path with its hash.

    Returns ``False`` for an OpenSmogHash2 retry of a request already accepted
    (answered 200, stores nothing).
    """
    signature = check_signature(
        settings, credentials, authorization, signed, rogue_route, now
    )
    if signature is None:
        return True
    return check_window(conn, credentials.registration_id, signature)


def check_window(conn, registration: int, signature: replay.Signature) -> bool:
    """Accept an OpenSmogHash2 ``seq`` once; ``False`` for a retry of one accepted."""
    window = signed_sql.signed_window(conn, registration)
    verdict = replay.judge(signature.seq, signature.digest, window)
    if verdict is replay.Verdict.ACCEPT:
        first = signed_sql.remember_seq(
            conn, registration, signature.seq, signature.digest,
            replay.forgotten_below(window, signature.seq),
        )  # fmt: skip
        if first is None:
            return True
        verdict = replay.judge(signature.seq, signature.digest, {signature.seq: first})
    if verdict is replay.Verdict.RETRY:
        return False
    highest = max(window or {signature.seq: ""})
    raise BadOpenSmogHash(
        f"seq={signature.seq} was used before or lies below the window (highest "
        f"accepted seq {highest}, window {replay.WINDOW}); send a higher seq"
    )


RECOVERY = (
    "the operator can reset it (python3 -m co2logserver reset-sensor <SUID>), after "
    "which an unsigned PUT registers it again"
)


def check_reregistration(
    conn, registration: int, settings: Mapping, authorization, signed: bytes
) -> None:
    """Apply ``CO2LOGSERVER_ALLOW_REREGISTRATION`` to a PUT for a secure sensor.

    :raise Conflict: 409 saying how to recover.
    """
    policy = settings["CO2LOGSERVER_ALLOW_REREGISTRATION"]
    if policy is True:
        return
    if policy is False:
        raise Conflict(
            "This sensor is already registered and re-registration is off; " + RECOVERY
        )
    if authorization is None:
        raise Conflict(
            "This sensor is registered as secure: sign the PUT with its current SECRET "
            "(Authorization: OpenSmogHash <sha256(body + SECRET)>) to rotate the "
            "SECRET; if the SECRET is lost, " + RECOVERY
        )
    secret = sensor_sql.registration_secret(conn, registration)
    if not auth.opensmog_hash_matches(authorization, signed, secret):
        raise Conflict(
            "The OpenSmogHash of this PUT does not match the sensor's current SECRET "
            "(sha256 of the exact body bytes + SECRET); if the SECRET is lost, "
            + RECOVERY
        )
