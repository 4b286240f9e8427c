"""co2logserver.auth: SUIDs, SECRETs, OpenSmogHash, salted checksums, admin tokens.

Pure functions, so tables of (input, expected) without an app. The expected digests
are computed here with hashlib from the definitions in SPEC §4 and §6, never by the
functions under test.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from co2logserver import auth, config_default
from co2logserver.errors import BadRequest, Forbidden

SEED_BODY = b'{"time_utc":[43,23],"co2":[1223,2351]}'
SEED_SALT = "my-super-secret-psk"
SEED_MD5 = "b71e91feb2be18ccca019914a1da5b1d"
SECRET = "0123456789abcdef" * 4
BODY = b'[{"timestamp": 1485778030, "readings": {"PM10": 102.0}}]'


def expected_hash(body: bytes = BODY, secret: str = SECRET) -> str:
    """SPEC §6: sha256(raw body + SECRET as its 64 ASCII hex characters)."""
    return hashlib.sha256(body + secret.encode("ascii")).hexdigest()


def salted(algorithm: str, body: bytes, salt: str, length: int = 32) -> str:
    """SPEC §4: hex digest of the body with the salt appended."""
    digest = hashlib.new(algorithm, body + salt.encode())
    if algorithm.startswith("shake_"):
        return digest.hexdigest(length)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------
# SUID
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (
            "123e4567-e89b-12d3-a456-426655440000",
            "123e4567-e89b-12d3-a456-426655440000",
        ),
        (
            "123E4567-E89B-12D3-A456-426655440000",
            "123e4567-e89b-12d3-a456-426655440000",
        ),
        (
            "AbCdEf01-2345-6789-aBcD-eF0123456789",
            "abcdef01-2345-6789-abcd-ef0123456789",
        ),
        # Version and variant bits are not checked (SPEC §6).
        (
            "00000000-0000-0000-0000-000000000000",
            "00000000-0000-0000-0000-000000000000",
        ),
        (
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
        ),
    ],
)
def test_parse_suid_accepts_canonical_uuids(text, canonical):
    assert auth.parse_suid(text) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not-a-uuid",
        "123e4567e89b12d3a456426655440000",  # no hyphens
        "{123e4567-e89b-12d3-a456-426655440000}",
        "urn:uuid:123e4567-e89b-12d3-a456-426655440000",
        "123e4567-e89b-12d3-a456-42665544000",  # one digit short
        "123e4567-e89b-12d3-a456-4266554400000",  # one digit long
        "123e4567-e89b-12d3-a456-42665544000g",  # not hex
        "123e456-7e89b-12d3-a456-426655440000",  # hyphens misplaced
        " 123e4567-e89b-12d3-a456-426655440000",
        "123e4567-e89b-12d3-a456-426655440000\n",
        "123e4567-e89b-12d3-a456-426655440000/readings",
    ],
)
def test_parse_suid_refuses_anything_else(text):
    with pytest.raises(BadRequest) as raised:
        auth.parse_suid(text)
    assert raised.value.status == 400
    assert "SUID" in raised.value.message


def test_parse_suid_message_is_bounded():
    with pytest.raises(BadRequest) as raised:
        auth.parse_suid("x" * 10_000)
    assert len(raised.value.message) < 300


# --------------------------------------------------------------------------------------
# SECRET
# --------------------------------------------------------------------------------------


def test_new_secret_is_64_lowercase_hex():
    secret = auth.new_secret()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)


def test_new_secrets_differ():
    secrets = {auth.new_secret() for _ in range(100)}
    assert len(secrets) == 100


def test_new_secret_uses_the_secrets_module(monkeypatch):
    """256 bits from ``secrets`` (SPEC §6), not from ``random``."""
    calls = []

    def token_hex(nbytes=None):
        calls.append(nbytes)
        return "ab" * nbytes

    monkeypatch.setattr(auth.secrets, "token_hex", token_hex)
    assert auth.new_secret() == "ab" * 32
    assert calls == [32]


# --------------------------------------------------------------------------------------
# OpenSmogHash
# --------------------------------------------------------------------------------------


def test_opensmog_hash_is_sha256_of_body_then_secret():
    assert auth.opensmog_hash(BODY, SECRET) == expected_hash()
    empty = hashlib.sha256(SECRET.encode()).hexdigest()
    assert auth.opensmog_hash(b"", SECRET) == empty


@pytest.mark.parametrize(
    "header",
    [
        f"OpenSmogHash {expected_hash()}",
        f"opensmoghash {expected_hash()}",
        f"OPENSMOGHASH {expected_hash()}",
        f"oPeNsMoGhAsH {expected_hash()}",
        f"OpenSmogHash {expected_hash().upper()}",
        f"opensmoghash {expected_hash()[:32].upper()}{expected_hash()[32:]}",
        f"  OpenSmogHash {expected_hash()}  ",
    ],
)
def test_opensmog_hash_matches_case_insensitively(header):
    assert auth.opensmog_hash_matches(header, BODY, SECRET)


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (f"Bearer {expected_hash()}", "another scheme"),
        (f"Basic {expected_hash()}", "another scheme"),
        (f"OpenSmog {expected_hash()}", "another scheme"),
        (f"HMAC {expected_hash()}", "another scheme"),
        (expected_hash(), "no scheme"),
        ("OpenSmogHash", "no hash"),
        ("OpenSmogHash ", "no hash"),
        ("", "empty"),
        (f"OpenSmogHash {expected_hash()[:-1]}", "63 hex characters"),
        (f"OpenSmogHash {expected_hash()[:32]}", "32 hex characters"),
        (f"OpenSmogHash {expected_hash()}0", "65 hex characters"),
        (f"OpenSmogHash {expected_hash()[:-1]}g", "not hex"),
        (f"OpenSmogHash {expected_hash()[:-1]}0", "last digit wrong"),
        (f"OpenSmogHash {'0' * 64}", "wrong hash"),
        (f"OpenSmogHash {expected_hash(body=BODY + b' ')}", "hash of another body"),
        (f"OpenSmogHash {expected_hash(secret='f' * 64)}", "another SECRET"),
        (
            "OpenSmogHash " + hashlib.sha256(SECRET.encode() + BODY).hexdigest(),
            "SECRET first",
        ),
        (
            "OpenSmogHash "
            + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest(),
            "HMAC instead of the OpenSmogHash",
        ),
        (
            "OpenSmogHash " + hashlib.sha256(BODY + bytes.fromhex(SECRET)).hexdigest(),
            "SECRET as 32 raw bytes",
        ),
        (
            "OpenSmogHash " + hashlib.sha256(BODY).hexdigest(),
            "no SECRET",
        ),
    ],
)
def test_opensmog_hash_refuses(header, why):
    assert not auth.opensmog_hash_matches(header, BODY, SECRET), why


def test_opensmog_hash_compares_in_constant_time(monkeypatch):
    """The digest comparison goes through hmac.compare_digest (SPEC §4, issue 3)."""
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert auth.opensmog_hash_matches(f"OpenSmogHash {expected_hash()}", BODY, SECRET)
    assert not auth.opensmog_hash_matches(f"OpenSmogHash {'0' * 64}", BODY, SECRET)
    assert len(compared) == 2


# --------------------------------------------------------------------------------------
# Salted checksums (legacy /upload and /download)
# --------------------------------------------------------------------------------------


def test_seed_example_md5():
    """SPEC §4: the seed document's example digest."""
    assert auth.salted_digest(SEED_BODY, SEED_SALT, "md5") == SEED_MD5
    checksums = auth.salted_checksums([("Content-MD5-Salted", SEED_MD5)])
    assert checksums == {"md5": SEED_MD5}
    assert auth.match_checksums(SEED_BODY, checksums, [SEED_SALT]) == {"md5": SEED_SALT}


ALGORITHMS = sorted(hashlib.algorithms_guaranteed)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    "spell", [str.upper, str.lower, lambda name: name], ids=["upper", "lower", "as-is"]
)
def test_every_guaranteed_algorithm_is_parsed_and_matched(algorithm, spell):
    digest = salted(algorithm, SEED_BODY, SEED_SALT)
    header = f"Content-{spell(algorithm)}-Salted"
    checksums = auth.salted_checksums([(header, digest)])
    assert checksums == {algorithm: digest}
    matches = auth.match_checksums(SEED_BODY, checksums, ["other", SEED_SALT])
    assert matches == {algorithm: SEED_SALT}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_guaranteed_algorithm_refuses_a_wrong_salt(algorithm):
    digest = salted(algorithm, SEED_BODY, "wrong-salt")
    checksums = auth.salted_checksums([(f"Content-{algorithm}-Salted", digest)])
    assert auth.match_checksums(SEED_BODY, checksums, [SEED_SALT]) == {algorithm: None}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_guaranteed_algorithm_refuses_a_wrong_body(algorithm):
    digest = salted(algorithm, SEED_BODY + b" ", SEED_SALT)
    assert auth.match_checksums(SEED_BODY, {algorithm: digest}, [SEED_SALT]) == {
        algorithm: None
    }


@pytest.mark.parametrize("algorithm", ["shake_128", "shake_256"])
@pytest.mark.parametrize("length", [1, 16, 32, 64])
def test_shake_digests_of_any_length_match(algorithm, length):
    digest = salted(algorithm, SEED_BODY, SEED_SALT, length)
    assert auth.match_checksums(SEED_BODY, {algorithm: digest}, [SEED_SALT]) == {
        algorithm: SEED_SALT
    }


@pytest.mark.parametrize(
    ("algorithm", "digest"),
    [
        ("md5", SEED_MD5[:-1]),  # short hex
        ("md5", SEED_MD5 + "0"),  # long hex
        ("md5", SEED_MD5[:-1] + "x"),  # not hex
        ("md5", ""),
        ("sha256", SEED_MD5),  # an MD5 where a SHA-256 belongs
        ("shake_128", salted("shake_128", SEED_BODY, SEED_SALT)[:-1]),  # odd length
        ("shake_128", ""),
    ],
)
def test_malformed_digests_never_match(algorithm, digest):
    assert auth.match_checksums(SEED_BODY, {algorithm: digest}, [SEED_SALT]) == {
        algorithm: None
    }


def test_digest_value_case_and_spaces_do_not_matter():
    header = ("content-md5-salted", f"  {SEED_MD5.upper()} ")
    checksums = auth.salted_checksums([header])
    assert auth.match_checksums(SEED_BODY, checksums, [SEED_SALT]) == {"md5": SEED_SALT}


@pytest.mark.parametrize(
    "header",
    [
        "Content-MD5",  # the unsalted HTTP header
        "Content-Type",
        "Content-FOO-Salted",  # not a hashlib algorithm
        "Content-sha257-Salted",
        "Content-MD5-Salted-X",
        "X-Content-MD5-Salted",
        "Content--Salted",
    ],
)
def test_other_headers_are_not_checksums(header):
    assert auth.salted_checksums([(header, SEED_MD5)]) == {}


def test_several_checksum_headers_at_once():
    headers = [
        ("Content-Type", "application/json"),
        ("Content-MD5-Salted", SEED_MD5),
        ("Content-SHA256-Salted", "0" * 64),
    ]
    checksums = auth.salted_checksums(headers)
    matches = auth.match_checksums(SEED_BODY, checksums, [SEED_SALT])
    assert matches == {"md5": SEED_SALT, "sha256": None}
    assert auth.checksum_columns(matches) == ("md5", "sha256")


def test_no_salts_match_nothing():
    assert auth.match_checksums(SEED_BODY, {"md5": SEED_MD5}, []) == {"md5": None}


def test_salted_checksums_compare_in_constant_time(monkeypatch):
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(
        auth.hmac, "compare_digest", lambda a, b: compared.append(1) or real(a, b)
    )
    auth.match_checksums(SEED_BODY, {"md5": SEED_MD5}, ["a", SEED_SALT])
    assert compared


@pytest.mark.parametrize(
    ("matches", "allowed"),
    [
        ({"md5": SEED_SALT}, True),
        ({"md5": SEED_SALT, "sha1": SEED_SALT}, True),
        ({"md5": SEED_SALT, "sha1": None}, False),
        ({"md5": None}, False),
        ({}, False),
    ],
)
def test_authorize_with_the_default_checker(matches, allowed):
    checker = config_default.CO2LOGSERVER_AUTH_CHECKER
    auth.authorize(matches, required=False, checker=checker)  # never raises
    if allowed:
        auth.authorize(matches, required=True, checker=checker)
    else:
        with pytest.raises(Forbidden) as raised:
            auth.authorize(matches, required=True, checker=checker)
        assert raised.value.status == 403
        assert "Salted" in raised.value.message


def test_authorize_with_an_operator_checker():
    def only_sha256(matches):
        return matches.get("sha256") is not None

    auth.authorize({"sha256": "s"}, required=True, checker=only_sha256)
    with pytest.raises(Forbidden):
        auth.authorize({"md5": "s"}, required=True, checker=only_sha256)


# --------------------------------------------------------------------------------------
# Admin tokens
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("Bearer token-1", True),
        ("bearer token-2", True),
        ("BEARER  token-1 ", True),
        ("Bearer token-3", False),
        ("Bearer Token-1", False),  # tokens are case-sensitive
        ("Bearer token-", False),
        ("Bearer token-10", False),
        ("Bearer ", False),
        ("Bearer", False),
        ("token-1", False),
        ("Basic token-1", False),
        (f"OpenSmogHash {'0' * 64}", False),
        ("", False),
        (None, False),
    ],
)
def test_bearer_token_allowed(header, allowed):
    assert auth.bearer_token_allowed(header, ["token-1", "token-2"]) is allowed


@pytest.mark.parametrize("header", ["Bearer ", "Bearer x", None])
def test_no_admin_tokens_allow_nobody(header):
    assert not auth.bearer_token_allowed(header, [])
