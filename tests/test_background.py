"""ProcessThread: one loop per process, a child of fork() starts its own."""

from __future__ import annotations

import signal
import threading

from co2logserver import background
from co2logserver.background import ProcessThread
from tests.processes import in_a_forked_child


def looping(started: list[int]) -> tuple[ProcessThread, list[int]]:
    """A ProcessThread whose loop counts its starts and runs until stopped."""
    runner: ProcessThread

    def loop() -> None:
        started.append(threading.get_ident())
        runner.stop_event.wait(30)

    runner = ProcessThread("test-loop", loop, on_new_process=lambda: started.append(0))
    return runner, started


def test_one_thread_however_many_callers_start_it() -> None:
    runner, started = looping([])
    callers = [threading.Thread(target=runner.start) for _ in range(8)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(5)
    try:
        assert runner.alive()
        assert started.count(0) == 1  # on_new_process: once, for this process
        assert not runner.start()  # running already
    finally:
        runner.stop(5)
    assert not runner.alive()
    assert len([ident for ident in started if ident]) == 1


def test_stop_ends_the_loop_and_a_new_start_runs_a_fresh_one() -> None:
    runner, started = looping([])
    runner.start()
    first = runner.stop_event
    runner.stop(5)
    assert first.is_set() and not runner.alive()
    assert runner.start()  # a new event, a new thread, no new process
    try:
        assert not runner.stop_event.is_set()
        assert started.count(0) == 1
    finally:
        runner.stop(5)


def test_a_forked_child_starts_its_own_thread_even_if_the_lock_was_held() -> None:
    """The parent's thread is not the child's; a start lock held at fork() is not
    held in the child (it would wait for a thread that does not exist there)."""
    runner, started = looping([])
    runner.start()
    try:
        with background._START_LOCK[0]:  # another thread is starting something

            def child() -> dict[str, object]:
                signal.alarm(10)  # a child stuck on the lock dies: no answer
                before = runner.alive()
                began = runner.start()
                report = {"before": before, "began": began, "after": runner.alive()}
                report["new_process"] = started.count(0)
                runner.stop(5)
                return report

            _, report = in_a_forked_child(child)
    finally:
        runner.stop(5)
    assert report == {"before": False, "began": True, "after": True, "new_process": 2}
