"""Pytest plugin that runs private PostgreSQL, Redis and Mosquitto servers.

Load it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.servers"]``.

Every server listens on 127.0.0.1 on a free port, lives in its own temporary
directory and is stopped (by PID) when its fixture is torn down.  Environment
overrides let a developer point the tests at existing servers instead:

``CO2LOGSERVER_TEST_PG_URL``
    SQLAlchemy URL used by :func:`postgres_url` (its user must be allowed to
    create databases, :func:`pg_database_url` creates one per test).
``CO2LOGSERVER_TEST_REDIS_URL``
    URL returned by :func:`redis_url`.
``CO2LOGSERVER_TEST_MQTT_URL``
    ``mqtt://host:port`` of the broker used by :func:`mosquitto_server`.

These variables are read once, when the plugin is imported.

A missing server binary skips the dependent tests, except when ``CI=true``:
then it fails them, so that CI never counts skipped tests as passing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
LOCALHOST = "127.0.0.1"
LOG_TAIL_LINES = 40
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
PG_SUPERUSER = "postgres"
PG_DBNAME = "co2logserver_test"
PG_SYSTEM_USER = "postgres"


# Overrides are read once, when the plugin is loaded, so that fixtures which
# clear CO2LOGSERVER_* variables for each test do not hide them.
ENV_OVERRIDES: dict[str, str] = {
    name: os.environ[name]
    for name in (
        "CO2LOGSERVER_TEST_PG_URL",
        "CO2LOGSERVER_TEST_REDIS_URL",
        "CO2LOGSERVER_TEST_MQTT_URL",
    )
    if os.environ.get(name)
}


class ServerError(RuntimeError):
    """A test server could not be started or stopped."""


# --------------------------------------------------------------------------
# Generic helpers
# --------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is currently free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def in_ci() -> bool:
    """Return True when running under CI (environment variable ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(message: str) -> NoReturn:
    """Fail the test under CI, otherwise skip it, with ``message``."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: refusing to skip)", pytrace=False)
    pytest.skip(message)


def find_binary(name: str, debian_package: str) -> str:
    """Return the path of executable ``name`` or skip/fail the test.

    ``PATH`` is searched first, then the sbin directories, which are often
    missing from the ``PATH`` of unprivileged users.
    """
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    found = shutil.which(name, path=search)
    if found is None:
        unavailable(
            f"{name!r} not found: install the Debian package {debian_package!r} "
            f"(apt-get install {debian_package})"
        )
    return found


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of the log file ``path``."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def port_open(host: str, port: int) -> bool:
    """Return True if a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str,
    port: int,
    proc: subprocess.Popen[bytes] | None = None,
    timeout: float = STARTUP_TIMEOUT,
) -> None:
    """Wait until ``host:port`` accepts connections.

    Raises :class:`ServerError` on timeout or when ``proc`` exits early.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"server exited with code {proc.returncode}")
        time.sleep(0.05)
    raise ServerError(f"{host}:{port} not accepting connections after {timeout}s")


def wait_for_port_closed(host: str, port: int, timeout: float = STOP_TIMEOUT) -> None:
    """Wait until nothing accepts connections on ``host:port`` any more."""
    deadline = time.monotonic() + timeout
    while port_open(host, port):
        if time.monotonic() > deadline:
            raise ServerError(f"{host}:{port} still accepting connections")
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    """Return True if a process with ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state follows the parenthesised command name, which may hold spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"


def terminate_pid(pid: int, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to ``pid``, then SIGKILL it if still alive after a while."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + STOP_TIMEOUT
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def make_tempdir(prefix: str) -> Path:
    """Create a private temporary directory under the system temp dir."""
    return Path(tempfile.mkdtemp(prefix=f"co2logserver-{prefix}-"))


# --------------------------------------------------------------------------
# Foreground daemons (Redis, Mosquitto)
# --------------------------------------------------------------------------


class ForegroundServer:
    """A server process that runs in the foreground, started with Popen."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: Path) -> None:
        """Remember how to run ``argv``; nothing is started yet."""
        self.name = name
        self.argv = argv
        self.host = LOCALHOST
        self.port = port
        self.workdir = workdir
        self.output_path = workdir / f"{name}.out"
        self.log_path = self.output_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the server (no-op if running) and wait until it listens."""
        if self.running:
            return
        with self.output_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(self.host, self.port, self.proc)
        except ServerError as exc:
            self.stop()
            raise ServerError(self.failure_message(str(exc))) from exc

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM, then SIGKILL) by its PID."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def failure_message(self, reason: str) -> str:
        """Describe a start failure, including the tail of the server logs."""
        logs = {self.output_path, self.log_path}
        tails = "\n".join(f"--- {p} ---\n{log_tail(p)}" for p in sorted(logs))
        return f"{self.name} on port {self.port}: {reason}\n{tails}"


def start_redis(workdir: Path) -> ForegroundServer:
    """Start a private, non-persistent redis-server in ``workdir``."""
    binary = find_binary("redis-server", "redis-server")
    port = free_port()
    argv = [
        binary,
        "--port", str(port),
        "--bind", LOCALHOST,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--daemonize", "no",
    ]  # fmt: skip
    server = ForegroundServer("redis", argv, port, workdir)
    server.start()
    return server


class MosquittoServer(ForegroundServer):
    """A private Mosquitto broker with on-disk persistence."""

    @property
    def url(self) -> str:
        """The broker URL, ``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://{self.host}:{self.port}"


def write_mosquitto_config(workdir: Path, port: int) -> Path:
    """Write a mosquitto.conf for a private broker and return its path."""
    lines = [
        f"listener {port} {LOCALHOST}",
        "allow_anonymous true",
        "persistence true",
        f"persistence_location {workdir}/",
        f"log_dest file {workdir / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
    ]
    if os.geteuid() == 0:
        # Otherwise mosquitto drops to user "mosquitto", which cannot write
        # to our private directory.
        lines.insert(0, "user root")
    config = workdir / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


def start_mosquitto(workdir: Path) -> MosquittoServer:
    """Start a private mosquitto broker in ``workdir``."""
    binary = find_binary("mosquitto", "mosquitto")
    port = free_port()
    config = write_mosquitto_config(workdir, port)
    server = MosquittoServer("mosquitto", [binary, "-c", str(config)], port, workdir)
    server.log_path = workdir / "mosquitto.log"
    server.start()
    return server


class ExternalMqttServer:
    """An MQTT broker given by ``CO2LOGSERVER_TEST_MQTT_URL``; not managed."""

    def __init__(self, url: str) -> None:
        """Parse ``url`` (``mqtt://host:port``)."""
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or LOCALHOST
        self.port = parts.port or 1883

    def stop(self) -> None:
        """External brokers cannot be stopped: skip (or fail under CI)."""
        unavailable("cannot stop the external broker CO2LOGSERVER_TEST_MQTT_URL")

    def start(self) -> None:
        """Nothing to do: the external broker is assumed to be running."""


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


def _pg_version_key(bindir: Path) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin`` directories."""
    return tuple(int(n) for n in re.findall(r"\d+", bindir.parent.name))


def find_pg_bindir() -> Path:
    """Return the directory holding initdb/pg_ctl (highest version wins)."""
    candidates = [
        d
        for d in Path("/usr/lib/postgresql").glob("*/bin")
        if (d / "initdb").exists() and (d / "pg_ctl").exists()
    ]
    if candidates:
        return max(candidates, key=_pg_version_key)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    unavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install the "
        "Debian package 'postgresql' (apt-get install postgresql)"
    )


def pg_system_user() -> pwd.struct_passwd | None:
    """Return the account to run PostgreSQL as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        unavailable(
            "running as root but there is no 'postgres' system user to run "
            "PostgreSQL as: install the Debian package 'postgresql'"
        )


class PostgresServer:
    """A private PostgreSQL cluster that can be stopped and restarted."""

    def __init__(self, bindir: Path, workdir: Path, port: int) -> None:
        """Describe a cluster in ``workdir``; call :meth:`init` to create it."""
        self.bindir = bindir
        self.workdir = workdir
        self.datadir = workdir / "data"
        self.log_path = workdir / "postgresql.log"
        self.host = LOCALHOST
        self.port = port
        self.user = PG_SUPERUSER
        self.dbname = PG_DBNAME
        self.run_as = pg_system_user()

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the test database on this server."""
        return self.url_for(self.dbname)

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL of database ``dbname`` on this server."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def pid(self) -> int | None:
        """PID of the postmaster, read from ``postmaster.pid``, if running."""
        try:
            first = (self.datadir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    @property
    def running(self) -> bool:
        """True while the postmaster is alive."""
        return self.pid is not None

    def _run(self, argv: list[str]) -> None:
        """Run a PostgreSQL tool (as the postgres user when we are root)."""
        if self.run_as is not None:
            argv = ["runuser", "-u", self.run_as.pw_name, "--", *argv]
        result = subprocess.run(
            argv,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT + 30,
            check=False,
        )
        if result.returncode != 0:
            raise ServerError(
                f"{shlex.join(argv)} failed with code {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\n"
                f"--- {self.log_path} ---\n{log_tail(self.log_path)}"
            )

    def init(self) -> None:
        """Create the cluster (initdb, trust auth) and the test database."""
        if self.run_as is not None:
            os.chown(self.workdir, self.run_as.pw_uid, self.run_as.pw_gid)
        self._run(
            [
                str(self.bindir / "initdb"),
                "--pgdata", str(self.datadir),
                "--username", self.user,
                "--auth", "trust",
                "--encoding", "UTF8",
                "--locale", "C",
                "--no-sync",
            ]
        )  # fmt: skip
        self.start()
        create_database(self.url_for("postgres"), self.dbname)

    def start(self) -> None:
        """Start the server (no-op if running) and wait until it is ready."""
        if self.running:
            return
        options = [
            "-c", f"listen_addresses={self.host}",
            "-c", f"unix_socket_directories={self.workdir}",
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-p", str(self.port),
        ]  # fmt: skip
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "--pgdata", str(self.datadir),
                "--log", str(self.log_path),
                "--options", shlex.join(options),
                "--wait",
                "--timeout", str(int(STARTUP_TIMEOUT)),
                "start",
            ]
        )  # fmt: skip
        try:
            wait_for_port(self.host, self.port)
        except ServerError as exc:
            raise ServerError(f"{exc}\n{log_tail(self.log_path)}") from exc

    def stop(self) -> None:
        """Stop the server (fast shutdown, i.e. SIGINT to the postmaster PID)."""
        pid = self.pid
        if pid is None:
            return
        terminate_pid(pid, signal.SIGINT)
        wait_for_port_closed(self.host, self.port)
        if self.running:
            raise ServerError(f"PostgreSQL (PID {pid}) did not stop")


def start_postgres() -> PostgresServer:
    """Create and start a private PostgreSQL cluster on a free port."""
    bindir = find_pg_bindir()
    server = PostgresServer(bindir, make_tempdir("pg"), free_port())
    try:
        server.init()
    except BaseException:
        stop_postgres(server)
        raise
    return server


def stop_postgres(server: PostgresServer) -> None:
    """Stop ``server`` and remove its directory."""
    try:
        server.stop()
    finally:
        shutil.rmtree(server.workdir, ignore_errors=True)


def _admin_engine(url: str) -> Engine:
    """Create a throw-away AUTOCOMMIT engine for CREATE/DROP DATABASE on ``url``."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    return sqlalchemy.create_engine(
        url, isolation_level="AUTOCOMMIT", poolclass=NullPool
    )


def _quote_ident(name: str) -> str:
    """Quote an SQL identifier (database names we generate are safe anyway)."""
    return '"' + name.replace('"', '""') + '"'


def create_database(admin_url: str, name: str) -> None:
    """Create database ``name`` on the server that ``admin_url`` points to."""
    import sqlalchemy

    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f"CREATE DATABASE {_quote_ident(name)}"))
    finally:
        engine.dispose()


def drop_database(admin_url: str, name: str) -> None:
    """Terminate all connections to database ``name`` and drop it."""
    import sqlalchemy

    engine = _admin_engine(admin_url)
    terminate = sqlalchemy.text(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = :name AND pid <> pg_backend_pid()"
    )
    try:
        with engine.connect() as conn:
            conn.execute(terminate, {"name": name})
            conn.execute(
                sqlalchemy.text(f"DROP DATABASE IF EXISTS {_quote_ident(name)}")
            )
    finally:
        engine.dispose()


def replace_database(url: str, name: str) -> str:
    """Return ``url`` with its database name replaced by ``name``."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database on a private PostgreSQL.

    ``postgresql+psycopg://postgres@127.0.0.1:PORT/co2logserver_test``, or the
    value of ``CO2LOGSERVER_TEST_PG_URL`` if set.
    """
    override = ENV_OVERRIDES.get("CO2LOGSERVER_TEST_PG_URL")
    if override:
        yield override
        return
    server = start_postgres()
    try:
        yield server.url
    finally:
        stop_postgres(server)


@pytest.fixture
def pg_database_url(postgres_url: str) -> Iterator[str]:
    """URL of a new, empty database ``test_<uuid hex>``, dropped after the test."""
    name = f"test_{uuid.uuid4().hex}"
    create_database(postgres_url, name)
    try:
        yield replace_database(postgres_url, name)
    finally:
        drop_database(postgres_url, name)


@pytest.fixture(scope="module")
def _postgres_server_instance() -> Iterator[PostgresServer]:
    """Run a PostgreSQL cluster of its own, shared by the tests of one module."""
    server = start_postgres()
    try:
        yield server
    finally:
        stop_postgres(server)


@pytest.fixture
def postgres_server(_postgres_server_instance: PostgresServer) -> PostgresServer:
    """Provide a stoppable PostgreSQL server: ``.url``, ``.stop()``, ``.start()``.

    Separate from :func:`postgres_url`'s server; (re)started before each test,
    so a test may leave it stopped.  Same port and data dir across restarts.
    """
    _postgres_server_instance.start()
    return _postgres_server_instance


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL ``redis://127.0.0.1:PORT/0`` of a private, non-persistent Redis.

    Or the value of ``CO2LOGSERVER_TEST_REDIS_URL`` if set.
    """
    override = ENV_OVERRIDES.get("CO2LOGSERVER_TEST_REDIS_URL")
    if override:
        yield override
        return
    workdir = make_tempdir("redis")
    try:
        server = start_redis(workdir)
        try:
            yield f"redis://{server.host}:{server.port}/0"
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def _mosquitto_instance() -> Iterator[MosquittoServer | ExternalMqttServer]:
    """Run the session's Mosquitto broker (or use the external one if set)."""
    override = ENV_OVERRIDES.get("CO2LOGSERVER_TEST_MQTT_URL")
    if override:
        yield ExternalMqttServer(override)
        return
    workdir = make_tempdir("mosquitto")
    try:
        server = start_mosquitto(workdir)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def mosquitto_server(
    _mosquitto_instance: MosquittoServer | ExternalMqttServer,
) -> MosquittoServer | ExternalMqttServer:
    """Provide a broker: ``.host``, ``.port``, ``.url``, ``.stop()``, ``.start()``.

    Session-wide broker, (re)started before each test so a test may leave it
    stopped.  Persistence is on: QoS 1 messages queued for persistent sessions
    survive ``stop()``/``start()``.
    """
    _mosquitto_instance.start()
    return _mosquitto_instance
