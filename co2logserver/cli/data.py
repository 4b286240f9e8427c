"""The stored data's upkeep (#18): the retention sweep, the daily archives and the
hourly rollups' build, each resumable and safe beside the running server."""

from __future__ import annotations

import logging
import sys

import click

from co2logserver.cli.app import build_app, main

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
    from co2logserver.store.errors import StorageUnavailable

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
    except (ApiError, StorageUnavailable) as error:
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
    from co2logserver.store.errors import StorageUnavailable

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
    except (ApiError, StorageUnavailable) as error:
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
    from co2logserver.store.errors import StorageUnavailable

    store = get_store(build_app(ctx))
    try:
        done = rollup_builder.build(store, restart, chunk, click.echo)
    except (ApiError, StorageUnavailable) as error:
        raise click.ClickException(error.message) from None
    except KeyboardInterrupt:
        raise click.ClickException(
            "interrupted: run build-rollups again to go on where it stopped"
        ) from None
    finally:
        store.dispose()
    click.echo(f"rollups built ({done} readings rolled up in this run)")
