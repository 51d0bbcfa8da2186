"""Preemption: SIGTERM / SIGINT ask the loop to checkpoint at the current step and return.

The handler only sets a flag; the loop polls it between steps, so the save happens at a step boundary with a
consistent state. With several processes the flag is OR-reduced across them (a signal may reach the hosts at
different steps; all must stop at the same one to save together). That reduction is a small collective that waits
for the step to finish, so it runs only every `check_period` steps, the same steps on every host. A second SIGINT restores Python's
default behaviour (KeyboardInterrupt), so an impatient user can still abort.

Watchers nest and share one flag: a program that drives training (the demo) watches for the whole run, so a signal
that arrives before the trainer has installed its own watcher still stops the trainer (at its start-up, below),
and the program sees it after training returns. The outermost watcher starts with a clear flag.

Start-up (`interrupt_on_signal(True)`): before a loop has anything to save, waiting for a step boundary means
waiting for minutes of data building, restoring or compiling, so a signal (or one already received) raises
`StartupInterrupted` at once instead; the trainer catches it, logs and returns.
"""

import logging
import signal
import threading
from types import FrameType
from typing import Optional

import jax
from jax.experimental import multihost_utils
import numpy as np

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StartupInterrupted(BaseException):
    """A stop asked for while a watcher interrupts on signals (start-up).

    A BaseException, like KeyboardInterrupt, so that code catching Exception (e.g. around a checkpoint read that
    may fail) does not take it for an error of its own.
    """

# Shared by every watcher of the process (see the module docstring): the stop flag, the name of the signal that set
# it (None: none yet, or a `request()`), and how many watchers are nested.
_REQUESTED = threading.Event()
_signal_name: Optional[str] = None
_active = 0


class PreemptionWatcher:
    """Installs the signal handlers for the duration of a `with` block."""

    def __init__(self, check_period: int = 10):
        """Prepares the watcher.

        Args:
          check_period: with several processes, poll (collectively) only at steps that are multiples of this.
        """
        self.check_period = max(1, check_period)
        self._previous: dict[int, object] = {}
        self._interrupt = False

    def __enter__(self) -> "PreemptionWatcher":
        global _active, _signal_name  # pylint: disable=global-statement
        if _active == 0:
            _REQUESTED.clear()
            _signal_name = None
        _active += 1
        if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        global _active  # pylint: disable=global-statement
        _active -= 1
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        del frame
        global _signal_name  # pylint: disable=global-statement
        _signal_name = signal.Signals(signum).name
        if self._interrupt:
            logging.warning("Received %s during start-up: stopping.", _signal_name)
        else:
            logging.warning("Received %s: will checkpoint at the end of the current step and exit.", _signal_name)
        _REQUESTED.set()
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if self._interrupt:
            self._interrupt = False  # raise once; the catcher's clean-up runs undisturbed
            raise StartupInterrupted(_signal_name)

    def interrupt_on_signal(self, enabled: bool) -> None:
        """While enabled, a signal raises StartupInterrupted where the main thread is (see the module docstring).

        Raises:
          StartupInterrupted: when enabling, if a stop was already asked for.
        """
        self._interrupt = enabled
        if enabled and self.requested:
            self._interrupt = False
            raise StartupInterrupted(_signal_name)

    def request(self) -> None:
        """Asks for a stop as a signal would (tests, hooks)."""
        _REQUESTED.set()

    @property
    def signal_name(self) -> Optional[str]:
        """The signal that asked for the stop, whichever nested watcher caught it (None: no signal)."""
        return _signal_name

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for on this process since the outermost watcher was entered."""
        return _REQUESTED.is_set()

    def should_stop(self, step: int) -> bool:
        """Whether to stop after `step`: asked to on this process, or (several processes) on any of them.

        With several processes every one must call this at every step; the check is collective at multiples of
        `check_period` and False in between.
        """
        local = self.requested
        if jax.process_count() == 1:
            return local
        if step % self.check_period:
            return False
        flags = multihost_utils.process_allgather(np.asarray([local], dtype=np.int32))
        return bool(np.any(flags))
