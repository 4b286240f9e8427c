"""The ``co2logserver`` command group: the options of 0.1.2, the server itself and
the commands that run beside it (forwarder, MQTT subscriber, devices, the database).

Options become configuration overrides (the highest precedence); every subcommand
builds its app with :func:`build_app`.
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
    from co2logserver.store.errors import StorageUnavailable

    app = build_app(ctx)
    try:
        existed = registration.reset_sensor(get_store(app), suid)
    except (ApiError, StorageUnavailable) as error:
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
    from co2logserver.store.errors import StorageUnavailable

    store = get_store(build_app(ctx))
    try:
        secret, suids = registration.register_device(store, alias)
    except (ApiError, StorageUnavailable) as error:
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
    from co2logserver.store.errors import StorageUnavailable

    app = build_app(ctx)
    try:
        get_store(app).ensure_schema()
    except (ApiError, StorageUnavailable) as error:  # no traceback
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
