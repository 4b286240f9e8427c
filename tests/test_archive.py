"""Daily archives (#18): written once per complete day, public locations only,
checksummed, resumable, and never served corrupt; on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import csv
import datetime
import gzip
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from co2logserver import archive
from co2logserver.cli import main
from co2logserver.store import get_store
from tests.conftest import SensorActions, observations

EXACT = {"latitude": 52.5163279, "longitude": 13.3777041, "elevation": 34.6}
HOUR = 3600


def day_start(days_ago: int) -> int:
    today = datetime.datetime.now(datetime.UTC).date()
    start = datetime.datetime.combine(
        today - datetime.timedelta(days=days_ago), datetime.time(), datetime.UTC
    )
    return int(start.timestamp())


def iso_day(days_ago: int) -> str:
    day = datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days_ago)
    return day.isoformat()


@pytest.fixture
def seeded(any_db_app, tmp_path):
    """An app with an archive directory and readings of three days (two complete,
    plus today): a secure sensor with an exact location, a rogue one without."""
    directory = tmp_path / "archives"
    app = any_db_app(ARCHIVE_DIR=str(directory))
    sensors = SensorActions(app.test_client())
    secure = sensors.new_suid()
    secret = sensors.register(secure, {"location": EXACT})
    rogue = sensors.new_suid()
    expected: dict[str, list[tuple]] = {iso_day(2): [], iso_day(1): []}
    for days_ago in (2, 1, 0):
        start = day_start(days_ago)
        times = [start, start + HOUR, start + 86399]
        if days_ago == 0:
            times = [start]
        body = observations(*times, PM10=10.0 + days_ago, TEMP=-3.5)
        assert sensors.post(secure, body, secret).status_code == 200
        rogue_body = observations(*times, CO2=400.0 + days_ago)
        assert sensors.post_rogue(rogue, rogue_body).status_code == 200
        if days_ago:
            for ts in times:
                expected[iso_day(days_ago)] += [
                    (secure, "PM10", ts, 10.0 + days_ago, "true"),
                    (secure, "TEMP", ts, -3.5, "true"),
                    (rogue, "CO2", ts, 400.0 + days_ago, "false"),
                ]
    # A late reading of the day before yesterday, sent after today's.
    late = observations(day_start(2) + 7200, PM10=99.0)
    assert sensors.post(secure, late, secret).status_code == 200
    expected[iso_day(2)].append((secure, "PM10", day_start(2) + 7200, 99.0, "true"))
    return app, directory, expected, secure, rogue


def run_archive(app, *args):
    """``python3 -m co2logserver -f DB archive ...`` in this process."""
    db = app.config["CO2LOGSERVER_DB"]
    env = {"CO2LOGSERVER_ARCHIVE_DIR": app.config["CO2LOGSERVER_ARCHIVE_DIR"]}
    if "://" in db:
        env["CO2LOGSERVER_SPOOL_DIR"] = app.config["CO2LOGSERVER_SPOOL_DIR"]
    return CliRunner().invoke(main, ["-f", db, "archive", *args], env=env)


def read_csv(path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def test_files_hold_the_days_readings_with_public_locations_only(seeded):
    app, directory, expected, secure, rogue = seeded
    result = run_archive(app)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    days = [iso_day(2), iso_day(1)]
    assert names == sorted(
        [f"readings-{d}.{fmt}" for d in days for fmt in archive.formats()]
        + [f"readings-{d}.{fmt}.sha256" for d in days for fmt in archive.formats()]
    )
    for day in days:
        rows = read_csv(directory / f"readings-{day}.csv.gz")
        assert list(rows[0]) == list(archive.COLUMNS)
        got = sorted(
            (r["suid"], r["quantity"], int(r["timestamp"]), float(r["value"]),
             r["verified"])
            for r in rows
        )  # fmt: skip
        assert got == sorted(expected[day])
        for row in rows:
            if row["suid"] == secure:
                assert (row["latitude"], row["longitude"]) == ("52.52", "13.38")
                assert row["elevation"] == "35"
                assert row["unit"] in ("µg/m³", "°C")
            else:
                assert row["latitude"] == row["longitude"] == ""
        raw = gzip.decompress((directory / f"readings-{day}.csv.gz").read_bytes())
        assert b"52.516" not in raw and b"13.377" not in raw and b"34.6" not in raw
        digest = hashlib.sha256((directory / f"readings-{day}.csv.gz").read_bytes())
        sidecar = (directory / f"readings-{day}.csv.gz.sha256").read_text()
        assert sidecar == f"{digest.hexdigest()}  readings-{day}.csv.gz\n"
    # Nothing of today.
    assert not (directory / f"readings-{iso_day(0)}.csv.gz").exists()


def test_an_incomplete_day_is_refused(seeded):
    app, directory, *_ = seeded
    for day in (iso_day(0), iso_day(-1)):
        result = run_archive(app, "--day", day)
        assert result.exit_code == 1
        assert f"{day} is not complete yet" in result.output
    assert not any(directory.glob("readings-*"))


def test_a_rerun_writes_nothing_new(seeded):
    app, directory, *_ = seeded
    assert run_archive(app).exit_code == 0
    before = {
        p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in directory.glob("r*")
    }
    result = run_archive(app)
    assert result.exit_code == 0, result.output
    assert "0 file(s) written" in result.output
    after = {
        p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in directory.glob("r*")
    }
    assert after == before


def test_a_corrupt_or_missing_file_is_rewritten_identically(seeded):
    app, directory, *_ = seeded
    assert run_archive(app).exit_code == 0
    corrupt = directory / f"readings-{iso_day(2)}.csv.gz"
    missing = directory / f"readings-{iso_day(1)}.csv.gz"
    good_corrupt, good_missing = corrupt.read_bytes(), missing.read_bytes()
    data = bytearray(good_corrupt)
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    missing.unlink()
    assert not archive.is_valid(corrupt)
    result = run_archive(app)
    assert result.exit_code == 0, result.output
    assert "2 file(s) written" in result.output
    # gzip without a time stamp: the same database gives the same bytes.
    assert corrupt.read_bytes() == good_corrupt
    assert missing.read_bytes() == good_missing


def test_a_run_interrupted_mid_day_resumes_without_doubling(seeded, monkeypatch):
    app, directory, expected, *_ = seeded
    real_write = archive.CsvGzWriter.write
    calls = []

    def write_then_stop(self, rows):
        calls.append(len(rows))
        if len(calls) == 2:  # the second day, after its rows were handed over
            real_write(self, rows)
            raise KeyboardInterrupt
        real_write(self, rows)

    monkeypatch.setattr(archive.CsvGzWriter, "write", write_then_stop)
    result = run_archive(app)
    assert result.exit_code == 1
    assert "interrupted" in result.output
    first, second = iso_day(2), iso_day(1)
    assert archive.is_valid(directory / f"readings-{first}.csv.gz")
    assert not (directory / f"readings-{second}.csv.gz").exists()
    assert not list(directory.glob(".readings-*"))  # no temporary file left
    monkeypatch.setattr(archive.CsvGzWriter, "write", real_write)
    mtime = (directory / f"readings-{first}.csv.gz").stat().st_mtime_ns
    result = run_archive(app)
    assert result.exit_code == 0, result.output
    assert f"{len(archive.formats())} file(s) written" in result.output
    assert (directory / f"readings-{first}.csv.gz").stat().st_mtime_ns == mtime
    rows = read_csv(directory / f"readings-{second}.csv.gz")
    assert len(rows) == len(expected[second])


def test_a_killed_run_leaves_no_half_file_and_a_stale_temporary_is_cleared(seeded):
    app, directory, *_ = seeded
    directory.mkdir(exist_ok=True)
    day = iso_day(2)
    # What a run killed (SIGKILL) after the rename but before the checksum leaves,
    # and a temporary file of a killed run.
    (directory / f"readings-{day}.csv.gz").write_bytes(b"\x1f\x8bhalf")
    (directory / f".readings-{day}.csv.gz.tmp-999999").write_bytes(b"partial")
    client = app.test_client()
    assert client.get("/archive/?format=json").get_json()["files"] == []
    assert client.get(f"/archive/readings-{day}.csv.gz").status_code == 503
    assert run_archive(app).exit_code == 0
    assert not list(directory.glob(".readings-*"))
    assert archive.is_valid(directory / f"readings-{day}.csv.gz")


def test_archive_lists_and_serves_verified_files(seeded):
    app, directory, expected, *_ = seeded
    assert run_archive(app).exit_code == 0
    client = app.test_client()
    listing = client.get("/archive/?format=json").get_json()
    listing["files"] = [f for f in listing["files"] if f["format"] == "csv.gz"]
    names = [f["name"] for f in listing["files"]]
    assert names == [f"readings-{iso_day(1)}.csv.gz", f"readings-{iso_day(2)}.csv.gz"]
    assert listing["columns"] == list(archive.COLUMNS)
    page = client.get("/archive/")
    assert page.status_code == 200 and b"readings-" + iso_day(1).encode() in page.data
    name = names[0]
    response = client.get(f"/archive/{name}", buffered=True)
    response.close()
    assert response.status_code == 200
    assert response.mimetype == "application/gzip"
    assert response.headers["Content-Length"] == str(len(response.data))
    assert response.data == (directory / name).read_bytes()
    assert hashlib.sha256(response.data).hexdigest() == listing["files"][0]["sha256"]
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(response.data).decode())))
    assert len(rows) == len(expected[iso_day(1)])
    checksum = client.get(f"/archive/{name}.sha256")
    assert checksum.status_code == 200 and checksum.mimetype == "text/plain"
    assert checksum.get_data(as_text=True).startswith(listing["files"][0]["sha256"])


def test_a_corrupt_file_is_never_served(seeded, caplog):
    app, directory, *_ = seeded
    assert run_archive(app).exit_code == 0
    name = f"readings-{iso_day(1)}.csv.gz"
    path = directory / name
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    response = app.test_client().get(f"/archive/{name}")
    assert response.status_code == 503
    assert response.get_json()["error"].startswith(f"The archive file {name} failed")
    assert bytes(data[:20]) not in response.data
    assert f"{name} does not match its checksum" in caplog.text


@pytest.mark.parametrize(
    "path",
    [
        "/archive/..%2f..%2fetc%2fpasswd",
        "/archive/../co2.sqlite",
        "/archive/%2e%2e",
        "/archive/.lock",
        "/archive/readings-2020-01-01.csv.gz.tmp-1",
        "/archive/readings-2020-01-01.csv",
        "/archive/co2.sqlite",
    ],
)
def test_no_path_outside_the_archive_files_is_reachable(seeded, path):
    app, directory, *_ = seeded
    assert run_archive(app).exit_code == 0
    db = app.config["CO2LOGSERVER_DB"]
    if "://" not in db:
        # A file that would be reachable by traversal, inside the archive too.
        (directory / "co2.sqlite").symlink_to(db)
    response = app.test_client().get(path)
    assert response.status_code == 404
    assert b"SQLite" not in response.data


def test_archives_off_without_the_setting(make_app):
    app = make_app()
    assert app.test_client().get("/archive/").status_code == 404
    result = CliRunner().invoke(
        main, ["-f", app.config["CO2LOGSERVER_DB"], "archive"], env={}
    )
    assert result.exit_code == 1
    assert "CO2LOGSERVER_ARCHIVE_DIR is not set" in result.output


def test_an_unwritable_directory_stops_start_and_command(make_app, tmp_path):
    # Below a regular file: no directory can be made there, even by root.
    (tmp_path / "a-file").write_text("")
    target = str(tmp_path / "a-file" / "archives")
    with pytest.raises(Exception, match="CO2LOGSERVER_ARCHIVE_DIR: cannot write"):
        make_app(ARCHIVE_DIR=target)
    result = CliRunner().invoke(
        main,
        ["-f", str(tmp_path / "db.sqlite"), "archive"],
        env={"CO2LOGSERVER_ARCHIVE_DIR": target},
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "CO2LOGSERVER_ARCHIVE_DIR: cannot write" in lines[0]


def test_an_empty_database_has_no_days(make_app, tmp_path):
    app = make_app(ARCHIVE_DIR=str(tmp_path / "a"))
    assert archive.complete_days(get_store(app)) == []
    result = run_archive(app)
    assert result.exit_code == 0, result.output
    assert "0 complete day(s)" in result.output


@pytest.mark.skipif(
    "parquet" not in archive.formats(), reason="pyarrow is not installed"
)
def test_parquet_holds_the_same_rows(seeded):
    import pyarrow.parquet as pq

    app, directory, expected, *_ = seeded
    assert run_archive(app).exit_code == 0
    day = iso_day(2)
    table = pq.read_table(directory / f"readings-{day}.parquet")
    assert table.column_names == list(archive.COLUMNS)
    assert table.num_rows == len(expected[day])
    assert archive.is_valid(directory / f"readings-{day}.parquet")


def test_progress_is_log_lines_off_a_terminal_and_a_bar_on_one(seeded, caplog):
    app, directory, *_ = seeded
    if "://" in app.config["CO2LOGSERVER_DB"]:
        pytest.skip("the output does not depend on the database")
    with caplog.at_level("INFO", logger="co2logserver.archive"):
        assert run_archive(app).exit_code == 0
    assert f"archive {iso_day(2)}: readings-{iso_day(2)}.csv.gz" in caplog.text
    assert "day 2 of 2" in caplog.text
    for path in directory.glob("readings-*"):
        path.unlink()
    # The same command with its stderr on a pseudo-terminal draws the bar.
    primary, secondary = os.openpty()
    env = {
        **os.environ,
        "CO2LOGSERVER_ARCHIVE_DIR": str(directory),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    db = app.config["CO2LOGSERVER_DB"]
    with os.fdopen(primary, "rb", buffering=0) as terminal:
        process = subprocess.Popen(
            [sys.executable, "-m", "co2logserver", "-f", db, "archive"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=secondary,
            env=env,
        )
        os.close(secondary)
        stdout, _ = process.communicate(timeout=60)
        drawn = b""
        with contextlib.suppress(OSError):  # EIO once the process closed its end
            while chunk := terminal.read(4096):
                drawn += chunk
    assert process.returncode == 0, drawn
    assert b"archiving" in drawn and b"readings/s" in drawn and b"2/2" in drawn
    assert b"2 file(s) written" in stdout or b"4 file(s) written" in stdout


def test_a_location_the_owner_hid_is_not_in_the_file(seeded):
    from co2logserver.store import accounts as accounts_sql

    app, directory, expected, secure, rogue = seeded
    with get_store(app).transaction() as conn:
        accounts_sql.save_profile(conn, secure, 0, location_public=False)
    assert run_archive(app, "--day", iso_day(1)).exit_code == 0
    rows = read_csv(directory / f"readings-{iso_day(1)}.csv.gz")
    assert {r["suid"] for r in rows} == {secure, rogue}
    assert all(r["latitude"] == r["longitude"] == r["elevation"] == "" for r in rows)
    assert not (directory / f"readings-{iso_day(2)}.csv.gz").exists()
