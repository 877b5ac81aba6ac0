"""The collector's pause holds while any pause is open, on any thread."""

from __future__ import annotations

import gc
import threading

from graph.core.batches import collector_paused


def test_the_last_of_overlapping_pauses_resumes_the_collector() -> None:
    """A window's maths (its thread) and a batch (the event loop) pause it at once, and the
    one that began first ends first: the other must still run without collections."""
    assert gc.isenabled()
    first, second = collector_paused(), collector_paused()
    first.__enter__()
    entered = threading.Event()

    def other_thread() -> None:
        second.__enter__()
        entered.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert entered.is_set() and not gc.isenabled()
    first.__exit__(None, None, None)
    assert not gc.isenabled(), "the second pause is still open"
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_switched_off_elsewhere_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled(), "not the pause's to switch on"
    finally:
        gc.enable()


def test_a_pause_resumes_the_collector_when_its_step_fails() -> None:
    try:
        with collector_paused():
            raise RuntimeError("the step failed")
    except RuntimeError:
        pass
    assert gc.isenabled()
