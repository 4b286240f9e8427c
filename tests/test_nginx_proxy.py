"""The documented nginx configuration, run by a real nginx in front of real gunicorn.

``docs/examples/nginx/co2logserver.conf`` is the file under test: only its
upstream address and listen port are replaced, and it is wrapped into a private
main configuration (``daemon off``, pid, logs and temp paths in a temp directory).
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.appserver import GunicornServer
from tests.servers import LOCALHOST, find_binary, free_port, wait_for_port

CONF = (
    Path(__file__).parent.parent / "docs" / "examples" / "nginx" / "co2logserver.conf"
)
SLOW_CLIENTS = 200
UPLOAD = {"co2": 1234}


def nginx_config(workdir: Path, upstream_port: int, port: int) -> Path:
    """The docs' file pointed at our gunicorn and port, in a private main config."""
    site = CONF.read_text()
    for old, new in (
        ("server 127.0.0.1:8000;", f"server {LOCALHOST}:{upstream_port};"),
        ("listen 80;", f"listen {LOCALHOST}:{port};"),
    ):
        assert old in site, f"{CONF} no longer contains {old!r}"
        site = site.replace(old, new)
    temp = {
        name: workdir / name
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    }
    for path in temp.values():
        path.mkdir(exist_ok=True)
    main = workdir / "nginx.conf"
    main.write_text(
        f"""daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
{site}
}}
"""
    )
    return main


@pytest.fixture
def proxied(tmp_path, request):
    """gunicorn with nginx in front: yields (nginx URL, gunicorn server).

    Two workers, unless the test sets its own address limit: the default
    ``memory://`` limits storage counts per worker, so a limit under test needs
    one worker to be counted in one place.
    """
    binary = find_binary("nginx", "nginx")
    limit = getattr(request, "param", None)
    settings = {
        "DB": str(tmp_path / "co2.sqlite"),
        "TRUSTED_PROXIES": "1",
        "RATELIMIT_ADDRESS": limit or "100000 per minute",
    }
    with GunicornServer(tmp_path, settings, workers=1 if limit else 2) as server:
        port = free_port()
        conf = nginx_config(tmp_path, server.port, port)
        with (tmp_path / "nginx.out").open("wb") as out:
            proc = subprocess.Popen(
                [binary, "-p", str(tmp_path), "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(LOCALHOST, port)
            yield f"http://{LOCALHOST}:{port}", server
        finally:
            proc.terminate()
            proc.wait(10)


def slowloris(port: int, stop: threading.Event) -> None:
    """Open SLOW_CLIENTS sockets and send their headers a byte at a time until stop."""
    header = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    sockets = []
    for _ in range(SLOW_CLIENTS):
        try:
            sockets.append(socket.create_connection((LOCALHOST, port), timeout=2))
        except OSError:
            break
    position = 0
    try:
        while not stop.is_set() and position < len(header):
            for sock in sockets:
                try:
                    sock.send(header[position : position + 1])
                except OSError:
                    pass
            position += 1
            stop.wait(0.2)
    finally:
        for sock in sockets:
            sock.close()


def upload_times(url: str, count: int) -> list[float]:
    """Seconds each of ``count`` uploads took (a timeout counts as 10 s)."""
    times = []
    for value in range(count):
        start = time.monotonic()
        try:
            answer = requests.post(url + "/upload", json={"co2": value}, timeout=10)
            assert answer.status_code == 200, answer.text
        except requests.Timeout:
            pass
        times.append(time.monotonic() - start)
    return sorted(times)


def measure_under_slowloris(url: str, port: int, count: int = 20) -> list[float]:
    """Upload times while SLOW_CLIENTS slow connections hold ``port`` (bounded)."""
    stop = threading.Event()
    attacker = threading.Thread(target=slowloris, args=(port, stop), daemon=True)
    attacker.start()
    time.sleep(1.0)  # let the slow connections open and start sending
    try:
        return upload_times(url, count)
    finally:
        stop.set()
        attacker.join(15)


def test_uploads_answer_quickly_through_nginx_under_slowloris(proxied):
    url, _ = proxied
    port = int(url.rsplit(":", 1)[1])
    times = measure_under_slowloris(url, port)
    p95 = times[int(len(times) * 0.95) - 1]
    print(f"through nginx with {SLOW_CLIENTS} slow clients: p95 {p95:.3f}s")
    assert p95 < 1.0, times


def test_bare_gunicorn_under_slowloris_is_measured_not_asserted(proxied):
    """Direct gunicorn -w 2: slow clients hold workers (numbers printed, see docs)."""
    _, server = proxied
    times = measure_under_slowloris(server.url, server.port, count=5)
    print(f"bare gunicorn -w 2 with {SLOW_CLIENTS} slow clients: times {times}")
    assert len(times) == 5


def test_slow_body_reaches_gunicorn_only_when_complete(proxied):
    url, server = proxied
    port = int(url.rsplit(":", 1)[1])
    body = b'{"co2": 777}'
    with socket.create_connection((LOCALHOST, port), timeout=10) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        # While nginx buffers the body a byte at a time, both workers stay free.
        for byte in body[:-1]:
            sock.send(bytes([byte]))
            time.sleep(0.1)
            answers = [
                requests.get(server.url + "/health", timeout=2) for _ in range(3)
            ]
            assert all(a.status_code == 200 for a in answers)
        sock.send(body[-1:])
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 200"), reply
    assert b'"saved-in-db":1' in reply.replace(b" ", b"")


def test_oversized_body_gets_413_from_nginx(proxied):
    url, server = proxied
    answer = requests.post(
        url + "/upload",
        data=b"x" * (1024 * 1024 + 1),
        headers={"Content-Type": "text/csv"},
        timeout=10,
    )
    assert answer.status_code == 413
    assert "nginx" in answer.text  # refused by nginx, never sent on to gunicorn


# Per day: a fixed window that cannot roll over between the four requests.
@pytest.mark.parametrize("proxied", ["3 per day"], indirect=True)
def test_forwarded_for_keys_the_rate_limit_on_the_real_client(proxied):
    url, _ = proxied
    statuses = [
        requests.post(
            url + "/upload",
            json=UPLOAD,
            headers={"X-Forwarded-For": f"198.51.100.{n}"},  # forged, not trusted
            timeout=5,
        ).status_code
        for n in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
