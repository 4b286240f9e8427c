"""OpenSmogHash2 (SPEC §11): test vectors, the seq window, and the HTTP behaviour."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from co2logserver import replay
from co2logserver.replay import WINDOW, Verdict, judge
from co2logserver.store import get_store
from tests.conftest import SensorActions, observations

EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "opensmog_hash2"
VECTORS = json.loads((EXAMPLE / "vectors.json").read_text())
NOW = int(time.time())


# ---- Test vectors: the docs' table, Python and the C example -------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"seq{v['seq']}")
def test_vectors_are_one_sha256_of_ts_seq_body_secret(vector):
    message = f"{vector['ts']}:{vector['seq']}:{vector['body']}{vector['secret']}"
    assert hashlib.sha256(message.encode()).hexdigest() == vector["hash"]
    body, secret = vector["body"].encode(), vector["secret"]
    assert (
        replay.header(vector["ts"], vector["seq"], body, secret)
        == (vector["authorization"])
    )
    signature = replay.parse(vector["authorization"])
    assert signature and replay.signs(signature, body, secret)
    assert not replay.signs(signature, body + b" ", secret)


def test_the_docs_show_every_vector():
    page = (Path(__file__).parent.parent / "docs" / "security.rst").read_text()
    assert "examples/opensmog_hash2/vectors.json" in page


C_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "opensmog_hash2.h"

int main(int argc, char **argv) {
  char out[160];
  const char *body = argv[4];
  if (argc != 5) return 2;
  if (!opensmog_hash2_header(strtoull(argv[1], 0, 10), strtoull(argv[2], 0, 10),
                             (const unsigned char *)body, strlen(body), argv[3],
                             out, sizeof out))
    return 3;
  puts(out);
  return 0;
}
"""


@pytest.fixture(scope="module")
def c_signer(tmp_path_factory) -> Path:
    """The docs' C signing core, compiled with the system compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("no C compiler (install gcc)")
    build = tmp_path_factory.mktemp("c")
    (build / "main.c").write_text(C_MAIN)
    program = build / "sign"
    subprocess.run(
        [compiler, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2",
         f"-I{EXAMPLE}", str(build / "main.c"), str(EXAMPLE / "opensmog_hash2.c"),
         "-o", str(program)],
        check=True,
    )  # fmt: skip
    return program


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"seq{v['seq']}")
def test_c_example_reproduces_the_vectors(c_signer, vector):
    args = [str(vector[k]) for k in ("ts", "seq", "secret", "body")]
    result = subprocess.run([str(c_signer), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == vector["authorization"]


def test_c_example_hashes_long_bodies_like_hashlib(c_signer):
    body = json.dumps([{"age": i, "readings": {"PM10": i / 3}} for i in range(40)])
    result = subprocess.run(
        [str(c_signer), "0", "1", "ab" * 32, body], capture_output=True, text=True
    )
    assert result.stdout.strip() == replay.header(0, 1, body.encode(), "ab" * 32)


# ---- The window, as a pure function --------------------------------------------------


def run(requests: list[tuple[int, str]]) -> list[Verdict]:
    """Judge requests in order as the server does, remembering accepted ones."""
    accepted: dict[int, str] = {}
    verdicts = []
    for seq, digest in requests:
        verdict = judge(seq, digest, accepted)
        if verdict is Verdict.ACCEPT:
            accepted[seq] = digest
            limit = replay.forgotten_below(accepted, seq)
            if limit is not None:
                accepted = {s: d for s, d in accepted.items() if s > limit}
        verdicts.append(verdict)
    return verdicts


@settings(max_examples=200, deadline=None)
@given(
    base=st.integers(0, 2**40),
    offsets=st.sets(st.integers(0, WINDOW - 1), min_size=1).flatmap(
        lambda s: st.permutations(sorted(s))
    ),
)
def test_any_order_inside_the_window_is_accepted_once_each(base, offsets):
    seqs = [base + o for o in offsets]
    verdicts = run([(s, f"h{s}") for s in seqs] + [(s, f"h{s}") for s in seqs])
    assert verdicts[: len(seqs)] == [Verdict.ACCEPT] * len(seqs)
    assert verdicts[len(seqs) :] == [Verdict.RETRY] * len(seqs)


@settings(max_examples=200, deadline=None)
@given(
    seqs=st.lists(st.integers(0, 500), min_size=1, max_size=40),
    probe=st.integers(0, 600),
)
def test_anything_else_is_refused(seqs, probe):
    run_seqs = [(s, f"h{s}") for s in seqs]
    accepted: dict[int, str] = {}
    for (seq, digest), verdict in zip(run_seqs, run(run_seqs), strict=True):
        if verdict is Verdict.ACCEPT:
            accepted[seq] = digest
    highest = max(accepted)
    in_window = {s: d for s, d in accepted.items() if s > highest - WINDOW}
    verdict = judge(probe, "other", in_window)
    if probe <= highest - WINDOW or probe in in_window:
        assert verdict is Verdict.REFUSE
    else:
        assert verdict is Verdict.ACCEPT


def test_below_the_window_is_refused_even_if_never_seen():
    assert run([(100, "a"), (100 - WINDOW, "b"), (100 - WINDOW + 1, "c")]) == [
        Verdict.ACCEPT,
        Verdict.REFUSE,
        Verdict.ACCEPT,
    ]


@pytest.mark.parametrize(
    "value",
    [
        "OpenSmogHash2 ts=1,seq=2",
        "OpenSmogHash2 ts=-1,seq=2,hash=" + "a" * 64,
        "OpenSmogHash2 ts=1,seq=2,hash=" + "a" * 63,
        "OpenSmogHash2 seq=2,ts=1,hash=" + "a" * 64,
        "OpenSmogHash2 ts=1,seq=9223372036854775808,hash=" + "a" * 64,
        "OpenSmogHash ts=1,seq=2,hash=" + "a" * 64,
    ],
)
def test_malformed_headers_do_not_parse(value):
    assert replay.parse(value) is None


# ---- Over HTTP, on SQLite and PostgreSQL ---------------------------------------------


def aged(*ages: int, value: float = 1.0) -> bytes:
    """Observations timed by ``age``: a replay of these would store them again."""
    return json.dumps([{"age": a, "readings": {"PM10": value}} for a in ages]).encode()


class Device:
    """A secure sensor that signs with OpenSmogHash2."""

    def __init__(self, app):
        self.client = app.test_client()
        self.actions = SensorActions(self.client)
        self.suid = self.actions.new_suid()
        self.secret = self.actions.register(self.suid)

    def post(self, body: bytes, seq: int, ts: int = 0, secret: str | None = None):
        header = replay.header(ts, seq, body, secret or self.secret)
        return self.client.post(
            f"/v1/sensors/{self.suid}/readings",
            data=body,
            headers={"Authorization": header},
        )

    def stored(self) -> int:
        response = self.client.get(f"/v1/sensors/{self.suid}/readings?limit=10000")
        return len(response.json["readings"])


@pytest.fixture
def device(any_db_app):
    return Device(any_db_app(REPLAY_WINDOW=300))


def test_accepted_once_and_an_identical_retry_stores_nothing(device):
    assert device.post(aged(10, 20), seq=1).status_code == 200
    assert device.stored() == 2
    retry = device.post(aged(10, 20), seq=1)
    assert retry.status_code == 200
    assert retry.data == b""
    assert device.stored() == 2  # ages would have given new times: nothing stored


def test_a_replayed_seq_with_another_body_is_refused(device):
    assert device.post(aged(10), seq=5).status_code == 200
    response = device.post(aged(11), seq=5)
    assert response.status_code == 401
    assert "seq=5" in response.json["error"]
    assert device.stored() == 1


def test_out_of_order_inside_the_window_and_refused_below_it(device):
    for seq in (100, 90, 99, 37):
        assert device.post(aged(seq), seq=seq).status_code == 200, seq
    assert device.post(aged(36), seq=36).status_code == 401
    assert device.post(aged(1), seq=1).status_code == 401
    assert device.stored() == 4


def test_ts_must_be_near_the_server_clock_unless_zero(device):
    late = device.post(aged(1), seq=1, ts=NOW - 3600)
    assert late.status_code == 401
    assert "X-OpenSmog-Time" in late.json["error"]
    assert abs(int(late.headers["X-OpenSmog-Time"]) - time.time()) < 5
    assert device.post(aged(1), seq=1, ts=int(time.time()) - 30).status_code == 200
    assert device.post(aged(2), seq=2, ts=0).status_code == 200


def test_a_wrong_hash_is_401_and_consumes_no_seq(device):
    assert device.post(aged(1), seq=1, secret="0" * 64).status_code == 401
    assert device.post(aged(1), seq=1).status_code == 200


def test_downgrade_to_plain_opensmoghash_is_refused(device):
    body = observations(NOW - 10)
    assert device.actions.post(device.suid, body, device.secret).status_code == 200
    assert device.post(aged(1), seq=1).status_code == 200
    response = device.actions.post(device.suid, observations(NOW - 5), device.secret)
    assert response.status_code == 401
    assert "OpenSmogHash2" in response.json["error"]


def test_a_refused_payload_consumes_no_seq(device):
    bad = json.dumps([{"age": 1, "readings": {"PM10": "x"}}]).encode()
    assert device.post(bad, seq=1).status_code == 400
    assert device.post(aged(1), seq=1).status_code == 200


def test_the_window_survives_a_restart(make_app):
    first = Device(make_app())
    assert first.post(aged(1), seq=200).status_code == 200
    restarted = make_app()  # a new process on the same database file
    client = restarted.test_client()
    body = aged(2)
    replayed = client.post(
        f"/v1/sensors/{first.suid}/readings",
        data=body,
        headers={"Authorization": replay.header(0, 100, body, first.secret)},
    )
    assert replayed.status_code == 401


def test_concurrent_posts_of_one_seq_store_once(device):
    body = aged(3, 4, 5)
    header = {"Authorization": replay.header(0, 9, body, device.secret)}
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def send():
        client = device.client.application.test_client()
        barrier.wait()
        url = f"/v1/sensors/{device.suid}/readings"
        statuses.append(client.post(url, data=body, headers=header).status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 8
    assert device.stored() == 3


def test_every_v1_answer_tells_the_time(app):
    client = app.test_client()
    actions = SensorActions(client)
    suid = actions.new_suid()
    for response in (
        client.put(f"/v1/sensors/{suid}", json={}),
        actions.post(suid, observations(NOW), "f" * 64),
        client.get("/v1/sensors"),
    ):
        assert abs(int(response.headers["X-OpenSmog-Time"]) - time.time()) < 5


def test_the_window_table_stays_bounded(make_app):
    device = Device(make_app())
    for seq in range(3 * WINDOW):
        assert device.post(aged(seq), seq=seq).status_code == 200
    with get_store(device.client.application).engine.connect() as conn:
        kept = conn.execute(text("SELECT min(seq), count(*) FROM signed_seqs")).one()
    assert kept[1] < 2 * WINDOW
    assert kept[0] > 3 * WINDOW - 1 - 2 * WINDOW
    assert device.post(aged(0), seq=2 * WINDOW - 1).status_code == 401
