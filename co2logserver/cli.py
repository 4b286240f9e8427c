"""Command line: ``python3 -m co2logserver`` with the options of 0.1.2, and tools.

Options become configuration overrides (the highest precedence); subcommands run
the OpenSenseMap forwarder, the MQTT subscriber and operator tasks.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from co2logserver import create_app
from co2logserver.errors import ConfigError


def overrides_from(dbfile: str | None, verbose: bool) -> dict[str, Any]:
    """Configuration overrides given on the command line."""
    overrides: dict[str, Any] = {}
    if dbfile:
        # A database URL (postgresql://...) as given, a file path made absolute.
        overrides["CO2LOGSERVER_DB"] = (
            dbfile if "://" in dbfile else os.path.abspath(dbfile)
        )
    if verbose:
        overrides["CO2LOGSERVER_LOGLEVEL"] = logging.DEBUG
    return overrides


def build_app(ctx: click.Context):
    """Create the app from the group's options; a bad config is one clear line."""
    options = ctx.find_root().obj
    try:
        return create_app(options["overrides"])
    except ConfigError as error:
        raise click.ClickException(f"configuration error: {error}") from None


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "-b", "--bind", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "-p",
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="HTTP port.",
)
@click.option(
    "-f",
    "--dbfile",
    type=click.Path(dir_okay=False),
    help="SQLite database file (sets CO2LOGSERVER_DB).",
)
@click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Python configuration file (as CO2LOGSERVER_CONFIG).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
@click.option(
    "-d", "--debug", is_flag=True, help="Flask debug mode (never in production)."
)
@click.option("-t", "--threaded", is_flag=True, help="Serve requests in threads.")
@click.option(
    "-n",
    "--processes",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Number of processes (as 0.1.2).",
)
@click.version_option(package_name="co2logserver")
@click.pass_context
def main(ctx, bind, port, dbfile, config_file, verbose, debug, threaded, processes):
    """co2logserver: a data-logging server for environmental sensors.

    Without a command, run the development server. In production use
    ``gunicorn co2logserver``.
    """
    if config_file:
        os.environ["CO2LOGSERVER_CONFIG"] = os.path.abspath(config_file)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = {"overrides": overrides_from(dbfile, verbose)}
    if ctx.invoked_subcommand is not None:
        return
    app = build_app(ctx)
    plain_logs_unless_a_terminal()
    app.run(
        host=bind,
        port=port,
        debug=debug,
        threaded=threaded,
        processes=processes,
        use_reloader=False,
    )


def plain_logs_unless_a_terminal() -> None:
    """No ANSI colour codes in the dev server's request log when it goes to a file,
    a pipe or the journal (werkzeug colours status codes whenever it can)."""
    if not sys.stderr.isatty():
        from werkzeug import serving

        serving._log_add_style = False  # werkzeug has no public switch for it


@main.command("reset-sensor")
@click.argument("suid")
@click.pass_context
def reset_sensor_command(ctx, suid):
    """End a sensor's registration so it may register (PUT) again."""
    from co2logserver import registration
    from co2logserver.errors import ApiError
    from co2logserver.store import get_store

    app = build_app(ctx)
    try:
        existed = registration.reset_sensor(get_store(app), suid)
    except ApiError as error:
        raise click.ClickException(error.message) from None
    if not existed:
        raise click.ClickException(f"no sensor {suid}")
    click.echo(f"sensor {suid.lower()} reset: it may register again")


@main.command("register-device")
@click.argument("alias")
@click.pass_context
def register_device_command(ctx, alias):
    """Register a protocol device (airrohr node, InfluxDB series, LoRaWAN DevEUI) as
    secure by its alias; prints its one new SECRET, for the device's password slot."""
    from co2logserver import registration
    from co2logserver.errors import ApiError
    from co2logserver.store import get_store

    store = get_store(build_app(ctx))
    try:
        secret, suids = registration.register_device(store, alias)
    except ApiError as error:
        raise click.ClickException(error.message) from None
    finally:
        store.dispose()
    for suid in suids:
        click.echo(f"registered {suid} as secure", err=True)
    click.echo(secret)


@main.command("forward")
@click.pass_context
def forward_command(ctx):
    """Forward stored data to the OpenSenseMap until stopped (Ctrl-C, SIGTERM).

    Runs beside the server (set CO2LOGSERVER_OSEM_FORWARDER_THREAD = False there);
    any number of these may run, one holds the lease and forwards.
    """
    import signal

    from co2logserver.forwarding.worker import OutboxForwarder
    from co2logserver.store import get_store

    ctx.obj["overrides"]["CO2LOGSERVER_OSEM_FORWARDER_THREAD"] = False
    app = build_app(ctx)
    if not app.config["CO2LOGSERVER_OSEM_UPLOAD"]:
        raise click.ClickException(
            "CO2LOGSERVER_OSEM_UPLOAD is off: nothing to forward"
        )
    forwarder = OutboxForwarder(get_store(app), app.config)
    signal.signal(signal.SIGTERM, lambda *_: forwarder.stop(timeout=0))
    try:
        forwarder.run_forever()
    except KeyboardInterrupt:
        forwarder.release()


@main.command("init-db")
@click.pass_context
def init_db_command(ctx):
    """Create missing tables in the configured database."""
    from co2logserver.errors import ApiError
    from co2logserver.store import get_store, outage_cause

    app = build_app(ctx)
    try:
        get_store(app).ensure_schema()
    except ApiError as error:  # the database does not answer: no traceback
        cause = f" ({outage_cause(error.__cause__)})" if error.__cause__ else ""
        raise click.ClickException(f"CO2LOGSERVER_DB: {error.message}{cause}") from None
    click.echo("database ready")


@main.command("mqtt")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Also serve the subscriber's /metrics on this port (at the -b address).",
)
@click.pass_context
def mqtt_command(ctx, metrics_port):
    """Store readings published to the MQTT broker until stopped (Ctrl-C, SIGTERM).

    Runs beside the server. Readings published to
    <prefix>/v1/sensors/<SUID>/readings[/<OpenSmogHash>] and
    <prefix>/rogue/v1/sensors/<SUID>/readings go through the same checks as HTTP;
    each is acknowledged to the broker only once stored. The broker is
    CO2LOGSERVER_MQTT_URL. Its metrics reach the web server's /metrics when both
    share PROMETHEUS_MULTIPROC_DIR.
    """
    import signal
    import threading

    from co2logserver.mqtt import MqttSubscriber
    from co2logserver.store import get_store

    app = build_app(ctx)
    try:
        subscriber = MqttSubscriber(
            get_store(app),
            app.config,
            on_subscribed=lambda topics: click.echo(
                f"mqtt: subscribed to {', '.join(topics)}"
            ),
        )
    except ConfigError as error:
        raise click.ClickException(f"configuration error: {error}") from None
    if metrics_port:
        serve_metrics(ctx.find_root().params["bind"], metrics_port)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    subscriber.start()
    try:
        while not stopping.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        subscriber.stop()


def serve_metrics(address: str, port: int) -> None:
    """Serve this process's metrics (the MQTT subscriber's) over HTTP, in a thread."""
    from prometheus_client import start_http_server

    from co2logserver import metrics

    try:
        start_http_server(port, addr=address, registry=metrics.counters().registry)
    except OSError as error:
        raise click.ClickException(
            f"--metrics-port: cannot listen on {address}:{port}: {error.strerror}"
        ) from None
    click.echo(f"mqtt: metrics on http://{address}:{port}/metrics")


# ------------------------------------------------------------------ owners (§12)


def owner_task(ctx: click.Context, task, *args):
    """Run an accounts task on the app's store; its errors are one clear line."""
    from co2logserver.errors import ApiError
    from co2logserver.store import get_store

    app = build_app(ctx)
    try:
        return task(get_store(app), *args)
    except ApiError as error:
        raise click.ClickException(error.message) from None


@main.command("create-user")
@click.argument("username")
@click.option("--admin", is_flag=True, help="An admin sees every sensor exactly.")
@click.password_option(help="The password (asked for when not given).")
@click.pass_context
def create_user_command(ctx, username, admin, password):
    """Create an owner account (whatever CO2LOGSERVER_SIGNUP says)."""
    from co2logserver import accounts

    owner_task(ctx, accounts.create_user, username, password, admin)
    click.echo(f"user {username.strip().lower()} created")


@main.command("disable-user")
@click.argument("username")
@click.option("--enable", is_flag=True, help="Enable a disabled account again.")
@click.pass_context
def disable_user_command(ctx, username, enable):
    """Disable an account: its sessions end, it cannot sign in."""
    from co2logserver import accounts

    owner_task(ctx, accounts.set_disabled, username, not enable)
    click.echo(f"user {username.strip().lower()} {'enabled' if enable else 'disabled'}")


@main.command("reset-password")
@click.argument("username")
@click.password_option(help="The new password (asked for when not given).")
@click.pass_context
def reset_password_command(ctx, username, password):
    """Set a new password; the account's other sessions end."""
    from co2logserver import accounts

    owner_task(ctx, accounts.reset_password, username, password)
    click.echo(f"password of {username.strip().lower()} reset")


@main.command("invite")
@click.pass_context
def invite_command(ctx):
    """Print a new invitation code (for CO2LOGSERVER_SIGNUP = "invitation")."""
    from co2logserver import accounts

    click.echo(owner_task(ctx, accounts.invite))


@main.command("claim-code")
@click.argument("suid")
@click.pass_context
def claim_code_command(ctx, suid):
    """Print a new claim code for a sensor (rogue, or a device that lost its code).

    It works once, beside the code a secure sensor derives from its SECRET, and
    replaces an earlier issued one. Hand it only to the sensor's owner.
    """
    from co2logserver import accounts

    click.echo(owner_task(ctx, accounts.issue_claim_code, suid))


@main.command("transfer-sensor")
@click.argument("suid")
@click.argument("username")
@click.pass_context
def transfer_sensor_command(ctx, suid, username):
    """Give a sensor to another owner account."""
    from co2logserver import accounts

    suid = owner_task(ctx, accounts.transfer, suid, username)
    click.echo(f"sensor {suid} now belongs to {username.strip().lower()}")


# ------------------------------------------------------------ retention (#18)


@main.command("retention-sweep")
@click.option(
    "--days",
    type=int,
    help="Delete raw readings older than this (default CO2LOGSERVER_RETENTION_DAYS).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100000),
    default=2000,
    show_default=True,
    help="Most rows deleted per transaction.",
)
@click.pass_context
def retention_sweep_command(ctx, days, batch_size):
    """Delete raw readings (and rollups) past retention, to the end of the sweep.

    Batches are short transactions beside the running server; Ctrl-C stops it
    (the batch under way rolls back), and running it again resumes the work.
    """
    from co2logserver import retention
    from co2logserver.errors import ApiError
    from co2logserver.store import get_store

    if days is not None:
        ctx.obj["overrides"]["CO2LOGSERVER_RETENTION_DAYS"] = days
    app = build_app(ctx)
    cut = retention.cutoffs(app.config)
    if cut is None:
        raise click.ClickException(
            "CO2LOGSERVER_RETENTION_DAYS is not set (None keeps everything): "
            "set it or pass --days"
        )
    sweeper = retention.Sweeper(get_store(app), cut, batch_size)
    try:
        deleted = sweep_with_progress(sweeper)
    except ApiError as error:
        raise click.ClickException(f"{error.message} (run again to resume)") from None
    except KeyboardInterrupt:
        click.echo("interrupted: run the command again to resume", err=True)
        sys.exit(130)
    click.echo(f"retention sweep done: {deleted} rows deleted")


def sweep_with_progress(sweeper) -> int:
    """Run the sweep with a progress bar on a terminal, plain lines otherwise
    (on stderr, every 5 seconds: a log file or the journal gets no bar)."""
    import time

    total = sweeper.count()
    deleted = 0
    started = last = time.monotonic()
    if sys.stdout.isatty():
        with click.progressbar(
            length=total,
            label="deleting old rows",
            show_pos=True,
            show_eta=True,
            item_show_func=lambda rate: rate,
        ) as bar:
            for batch in sweeper.batches():
                deleted += batch.deleted
                rate = deleted / max(time.monotonic() - started, 1e-9)
                bar.update(batch.deleted, f"{rate:,.0f} rows/s")
        return deleted
    click.echo(f"retention: {total} old rows to delete", err=True)
    for batch in sweeper.batches():
        deleted += batch.deleted
        now = time.monotonic()
        if now - last >= 5:
            last = now
            rate = deleted / max(now - started, 1e-9)
            click.echo(
                f"retention: {deleted} of {total} rows deleted ({rate:.0f} rows/s)",
                err=True,
            )
    return deleted


# ------------------------------------------------------------ daily archives (#18)


@main.command("archive")
@click.option(
    "--day",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Archive only this UTC day (YYYY-MM-DD); it must have ended.",
)
@click.pass_context
def archive_command(ctx, day):
    """Write a file per complete UTC day of every reading into CO2LOGSERVER_ARCHIVE_DIR.

    CSV.gz always, Parquet too when pyarrow is installed; public (rounded)
    locations only. Days already written whole are skipped, so an interrupted run
    resumes where it stopped; a missing or corrupt file is written again. A day
    never changes once written.
    """
    import time

    from co2logserver import archive
    from co2logserver.errors import ApiError
    from co2logserver.store import get_store

    app = build_app(ctx)
    directory = archive.archive_directory(app.config)
    if directory is None:
        raise click.ClickException("CO2LOGSERVER_ARCHIVE_DIR is not set: no archives")
    store = get_store(app)
    decimals = app.config["CO2LOGSERVER_PUBLIC_LOCATION_DECIMALS"]
    written, readings, started = 0, 0, time.monotonic()
    try:
        if day is not None:
            archive.require_complete(day.date())
            days = [day.date()]
        else:
            days = archive.complete_days(store)
        with archive.exclusive(directory):
            for names, count in archive_progress(days, store, decimals, directory):
                written += len(names)
                readings += count
    except (archive.IncompleteDay, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    except ApiError as error:
        raise click.ClickException(f"CO2LOGSERVER_DB: {error.message}") from None
    except KeyboardInterrupt:
        raise click.ClickException(
            "interrupted: the days written so far are kept; run again to resume"
        ) from None
    finally:
        store.dispose()
    click.echo(
        f"archive: {written} file(s) written ({readings} readings, "
        f"{time.monotonic() - started:.1f} s); {len(days)} complete day(s) in "
        f"{directory}"
    )


def archive_progress(days, store, decimals, directory):
    """Write each day, with a progress bar on a terminal and a log line otherwise."""
    from co2logserver import archive

    logger = logging.getLogger("co2logserver.archive")
    if not sys.stderr.isatty():
        for index, day in enumerate(days, 1):
            names, count = archive.write_day(store, decimals, directory, day)
            if names:
                logger.info(
                    "archive %s: %s (%d readings), day %d of %d",
                    day, ", ".join(names), count, index, len(days),
                )  # fmt: skip
            yield names, count
        return
    import time

    started, done = time.monotonic(), [0]

    def status(day):
        rate = done[0] / max(time.monotonic() - started, 1e-3)
        return f"{day.isoformat() if day else ''} {rate:,.0f} readings/s"

    with click.progressbar(
        days,
        label="archiving",
        file=sys.stderr,
        show_eta=True,
        show_pos=True,
        item_show_func=status,
    ) as bar:
        for day in bar:
            names, count = archive.write_day(store, decimals, directory, day)
            done[0] += count
            yield names, count


# ----------------------------------------------------------------- rollups (#18)


@main.command("build-rollups")
@click.option(
    "--restart", is_flag=True, help="Forget the rollups built so far and start over."
)
@click.option(
    "--chunk",
    type=click.IntRange(1),
    default=50_000,
    show_default=True,
    help="Readings per transaction (ingest waits for one at most).",
)
@click.pass_context
def build_rollups_command(ctx, restart, chunk):
    """Build the hourly rollups of the readings stored before they existed.

    Runs beside the server, in short transactions; interrupted (Ctrl-C), it goes on
    where it stopped when run again. Aggregates read the rollups once it is done.
    """
    from co2logserver import rollup_builder
    from co2logserver.errors import ApiError
    from co2logserver.store import get_store

    store = get_store(build_app(ctx))
    try:
        done = rollup_builder.build(store, restart, chunk, click.echo)
    except ApiError as error:
        raise click.ClickException(error.message) from None
    except KeyboardInterrupt:
        raise click.ClickException(
            "interrupted: run build-rollups again to go on where it stopped"
        ) from None
    finally:
        store.dispose()
    click.echo(f"rollups built ({done} readings rolled up in this run)")
