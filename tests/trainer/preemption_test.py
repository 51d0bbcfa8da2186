"""PreemptionWatcher: nested watchers share one flag, so a signal caught by the outer one stops the inner loop."""

import os
import signal

from class_jax.runtime.preemption import PreemptionWatcher


def test_a_signal_before_the_inner_watcher_is_seen_by_it_and_the_outermost_starts_clear():
    handler_before = signal.getsignal(signal.SIGTERM)
    with PreemptionWatcher() as outer:
        assert not outer.requested
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. while the trainer is still compiling
        assert outer.requested and outer.signal_name == "SIGTERM"
        with PreemptionWatcher() as inner:  # the trainer's own watcher, installed later
            assert inner.requested and inner.should_stop(1) and inner.signal_name == "SIGTERM"
        assert signal.getsignal(signal.SIGTERM) == outer._handle  # pylint: disable=protected-access
    assert signal.getsignal(signal.SIGTERM) == handler_before
    with PreemptionWatcher() as fresh:  # a new run in the same process starts without the old request
        assert not fresh.requested and not fresh.should_stop(1) and fresh.signal_name is None
        fresh.request()
        assert fresh.should_stop(1)
