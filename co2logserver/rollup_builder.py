"""``build-rollups``: roll up the readings stored before the rollups existed.

Each step is one short write transaction
(:func:`co2logserver.store.rollup_build.build_step`) that also records where the
next one starts, so the server keeps ingesting between steps and an interrupted
build goes on where it stopped. A terminal gets a
progress bar with rate and time left; a log or a pipe gets a plain line now and
then.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click

from co2logserver.store import Store, rollup_build, rollups

#: Seconds between the plain progress lines when not on a terminal.
LINE_EVERY = 10.0


def build(store: Store, restart: bool, chunk: int, echo: Callable[[str], Any]) -> int:
    """Build (or finish building) the rollups; return the readings rolled up.

    :param restart: forget what was built and start over.
    :param chunk: readings per transaction.
    """
    store.ensure_schema()
    with store.transaction() as conn:
        if restart:
            rollup_build.restart(conn)
        current = rollups.state(conn)
        if current is not None and current.built:
            echo("the rollups are built already (--restart builds them again)")
            return 0
        before, total = rollup_build.build_total(conn)
    if before:
        echo(f"resuming after {before} readings already rolled up")
    progress = Progress(before, max(total, before), echo)
    done = 0
    while True:
        with store.transaction() as conn:
            count, new = rollup_build.build_step(conn, chunk)
        done += count
        progress.advance(count)
        if new.built:
            progress.finish()
            return done


class Progress:
    """A progress bar on a terminal, plain lines elsewhere."""

    def __init__(self, done: int, total: int, echo: Callable[[str], Any]):
        self.done, self.total, self.echo = done, total, echo
        #: Readings rolled up in this run (the rate's).
        self.here = 0
        self.started = time.monotonic()
        self.last_line = self.started
        self.bar: Any = None
        if sys.stderr.isatty():
            self.bar = click.progressbar(
                length=total,
                label="rolling up readings",
                file=sys.stderr,
                show_eta=True,
                show_pos=True,
                item_show_func=lambda _: self.rate_text(),
            )
            self.bar.__enter__()
            self.bar.update(done)

    def rate(self) -> float:
        """Readings per second in this run."""
        return self.here / max(time.monotonic() - self.started, 1e-6)

    def rate_text(self) -> str:
        """The rate shown beside the bar."""
        return f"{self.rate():,.0f} readings/s"

    def advance(self, count: int) -> None:
        """``count`` more readings rolled up."""
        self.here += count
        self.done += count
        if self.bar is not None:
            self.bar.update(min(count, max(self.total - self.bar.pos, 0)))
            return
        now = time.monotonic()
        if now - self.last_line >= LINE_EVERY:
            self.last_line = now
            self.echo(self.line())

    def line(self) -> str:
        """``build-rollups: 1200 of about 5000 readings (24%), 800/s, 5 s left``."""
        rate = self.rate()
        left = max(self.total - self.done, 0)
        share = 100 * self.done / self.total if self.total else 100
        eta = f", {left / rate:.0f} s left" if rate > 0 and left else ""
        return (
            f"build-rollups: {self.done} of about {self.total} readings "
            f"({share:.0f}%), {rate:.0f}/s{eta}"
        )

    def finish(self) -> None:
        """Close the bar (or write the last line)."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
        else:
            self.echo(self.line())
