"""Group commit: the ingest requests of a worker's threads share one commit.

Every durable commit costs one fsync, and a request that commits alone pays one
whole; under concurrency the requests of a gthread worker would queue for the write
lock and pay one fsync each. Here the requests that become ready while a commit
runs form a *batch*: the first of them (the leader) opens the write transaction as
soon as the previous batch has committed, every member then runs its own
transaction block on that connection in turn, each inside its own ``SAVEPOINT``,
and the leader commits once for all of them (one fsync). Each member returns only
after that commit, so 200 still means durable and a read after it sees the data.

A member whose block fails is rolled back to its savepoint alone and gets its own
error at once; the others are unaffected. When the database is away (an outage in
any block, or at the begin or the commit) every member of the batch gets
:class:`~co2logserver.store.errors.StorageUnavailable`, as it would have alone, and the
spool takes each request on its own (:func:`co2logserver.applier.submit`).

There is no committer thread: with one request at a time (sync gunicorn workers)
every request leads a batch of one, which costs a savepoint and two lock
operations. Only :func:`joining` blocks take part (the ingest requests); every other
transaction of the store commits alone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from co2logserver.store import deadline
from co2logserver.store.errors import StorageUnavailable
from co2logserver.store.prepared import driver_cursor

if TYPE_CHECKING:
    from co2logserver.store import Store

#: Whether the current request's write transactions may share a commit.
JOINING: ContextVar[bool] = ContextVar("co2logserver_group_commit", default=False)


@contextmanager
def joining() -> Iterator[None]:
    """Let the store's write transactions in this block join a group commit."""
    token = JOINING.set(True)
    try:
        yield
    finally:
        JOINING.reset(token)


def run(conn: Connection, sql: str) -> None:
    """One statement on the driver's cursor, in the current transaction."""
    with driver_cursor(conn) as cursor:
        cursor.execute(sql)


class BatchFailed(Exception):
    """The batch could not commit for a reason that is not an outage (a bug)."""


class Batch:
    """The requests that share one transaction and one commit."""

    def __init__(self) -> None:
        self.members = 0  # joined
        self.finished = 0  # whose block has ended
        self.closed = False  # no more members: the commit is under way
        self.began = False  # its transaction is open (the leader holds the slot)
        self.conn: Connection | None = None
        #: Why the batch cannot commit (an outage, a failed begin or commit).
        self.failure: BaseException | None = None
        self.ready = threading.Event()  # the transaction is open (or failed)
        self.durable = threading.Event()  # committed (or failed)
        self.turn = threading.Lock()  # one member's block at a time


def failure_for_member(failure: BaseException) -> Exception:
    """A fresh exception per member thread (tracebacks are not shared)."""
    if isinstance(failure, StorageUnavailable):
        return StorageUnavailable(
            failure.message, failure.retry_after, failure.in_doubt
        )
    return BatchFailed(f"the shared commit failed: {type(failure).__name__}")


class GroupCommitter:
    """Forms batches of one process's write transactions and commits each once."""

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Condition()
        self._slot = threading.Lock()  # held by the batch in its transaction
        self._open: Batch | None = None
        self._pid = os.getpid()
        #: Called with each committed batch's size (``metrics`` observes it).
        self.on_commit: Callable[[int], None] | None = None
        #: Commits and requests committed by this process (for tests and metrics).
        self.commits = 0
        self.committed = 0

    def _join(self) -> tuple[Batch, bool]:
        """The open batch (and whether this thread leads it, i.e. created it)."""
        with self._lock:
            if os.getpid() != self._pid:  # forked: the parent's batches are not here
                self._pid, self._open, self._slot = os.getpid(), None, threading.Lock()
            batch = self._open
            leader = batch is None
            if batch is None:
                batch = self._open = Batch()
            batch.members += 1
            return batch, leader

    def _close(self, batch: Batch) -> None:
        with self._lock:
            batch.closed = True
            if self._open is batch:
                self._open = None

    def _finish(self, batch: Batch) -> None:
        with self._lock:
            batch.finished += 1
            self._lock.notify_all()

    @contextmanager
    def member(self) -> Iterator[Connection]:
        """A write transaction block that commits with the others of its batch.

        :raise StorageUnavailable: when the batch's transaction could not begin or
            commit, or the database went away in it (nothing of the block stored).
        """
        batch, leader = self._join()
        write = ExitStack()
        if leader:
            self._begin(batch, write)
        batch.ready.wait()
        try:
            with batch.turn:
                if batch.failure is not None or batch.conn is None:
                    raise failure_for_member(batch.failure or BatchFailed("no begin"))
                # A transaction opened inside the block commits alone: joining
                # this batch again would wait for the turn this thread holds.
                token = JOINING.set(False)
                try:
                    with self._savepoint(batch, batch.conn):
                        yield batch.conn
                finally:
                    JOINING.reset(token)
        except BaseException:
            self._finish(batch)
            if leader:
                self._commit(batch, write)
            raise
        self._finish(batch)
        if leader:
            self._commit(batch, write)
        else:
            batch.durable.wait()
        if batch.failure is not None:
            raise failure_for_member(batch.failure)

    def _begin(self, batch: Batch, write: ExitStack) -> None:
        """Open the batch's transaction once the previous batch has committed."""
        try:
            left = deadline.remaining()
            if not self._slot.acquire(timeout=-1 if left is None else left):
                raise self.store.unavailable(
                    TimeoutError("timed out: waiting for the previous commit")
                )
            try:
                batch.conn = write.enter_context(self.store._write())
                batch.began = True
            except BaseException:
                self._slot.release()
                raise
        except BaseException as error:
            batch.failure = error
            self._close(batch)
            batch.durable.set()
        finally:
            batch.ready.set()

    @contextmanager
    def _savepoint(self, batch: Batch, conn: Connection) -> Iterator[None]:
        """Run one member's block in a savepoint; roll back only it on an error.

        The savepoint statements go to the driver directly (a request pays two of
        them, so they cost what a statement costs, not a SQLAlchemy execution). An
        outage (or a savepoint that cannot be rolled back) dooms the batch: its
        connection can no longer commit anything.
        """
        quantities = self.store.quantities.pending_mark()
        try:
            run(conn, "SAVEPOINT co2logserver_request")
        except BaseException as error:
            raise self._doom(batch, error) from error
        try:
            yield
        except BaseException as error:
            try:
                run(conn, "ROLLBACK TO SAVEPOINT co2logserver_request")
                run(conn, "RELEASE SAVEPOINT co2logserver_request")
            except BaseException as rollback_error:
                raise self._doom(batch, rollback_error) from error
            self.store.quantities.forget_since(quantities)
            self.store.data.savepoint_rolled_back()
            if self.store.is_outage(error):
                raise self._doom(batch, error) from error
            raise
        try:
            run(conn, "RELEASE SAVEPOINT co2logserver_request")
        except BaseException as error:
            raise self._doom(batch, error) from error

    def _doom(self, batch: Batch, error: BaseException) -> BaseException:
        """Mark the batch as unable to commit; the error this member raises."""
        if batch.failure is None:
            batch.failure = (
                self.store.unavailable(error) if self.store.is_outage(error) else error
            )
        if isinstance(batch.failure, StorageUnavailable):
            return failure_for_member(batch.failure)
        return error

    def _commit(self, batch: Batch, write: ExitStack) -> None:
        """When every member's block has ended: commit (or roll back) the batch."""
        with self._lock:
            while batch.finished < batch.members:
                self._lock.wait()
            batch.closed = True
            if self._open is batch:
                self._open = None
        if not batch.began:
            return  # the begin failed: nothing to commit, the slot is free
        try:
            if batch.failure is None:
                write.close()  # COMMIT: one fsync for the whole batch
                self.commits += 1
                self.committed += batch.members
                if self.on_commit is not None:
                    self.on_commit(batch.members)
            else:
                # ROLLBACK, with an exception of its own: the failure itself may
                # be raised by a member thread at this moment.
                rollback = BatchFailed("rolled back")
                write.__exit__(BatchFailed, rollback, None)
        except BaseException as error:
            batch.failure = batch.failure or error
        finally:
            self._slot.release()
            batch.durable.set()
