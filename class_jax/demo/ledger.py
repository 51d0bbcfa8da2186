"""The demo's record of completed steps (DIR/demo_state.json): a rerun skips them, a killed run redoes only the
step it was in.

Every step's result is a small JSON value (figures, paths); the file is rewritten atomically after each step, so
whatever kills the demo, the ledger names only steps whose outputs are complete. Steps that take long (training,
mining, index builds) resume inside themselves too, from their own checkpoints.
"""

import json
import pathlib
import resource
import time
from typing import Any, Callable

from class_jax.corpus import corpus_io
from class_jax.runtime.errors import UserError

STATE_FILE = "demo_state.json"


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest finished child process (MiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"process": round(own, 1), "largest_child": round(children, 1)}


class Ledger:
    """Completed steps of one demo directory, with their results and durations."""

    def __init__(self, workdir: pathlib.Path, settings: dict[str, Any]):
        """Opens (or starts) the ledger of `workdir`.

        Raises:
          UserError: the directory holds a demo run with other settings, or an unreadable ledger.
        """
        self.path = workdir / STATE_FILE
        settings = json.loads(json.dumps(settings))  # as read back (tuples become lists)
        self._state: dict[str, Any] = {"settings": settings, "steps": {}, "sessions": []}
        if self.path.is_file():
            try:
                self._state = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise UserError(f"{self.path}: unreadable demo state ({e}); delete it to start over") from e
            if self._state.get("settings") != settings:
                raise UserError(f"{workdir} holds a demo run with other settings (see {self.path}): use another "
                                "--workdir, or delete that one to start over")
        self._session = {"started": time.time(), "seconds": 0.0, "steps_run": []}
        self._state["sessions"].append(self._session)

    def done(self, name: str) -> bool:
        """Whether step `name` completed in this or an earlier session."""
        return name in self._state["steps"]

    def result(self, name: str) -> Any:
        """The recorded result of a completed step."""
        return self._state["steps"][name]["result"]

    def run(self, name: str, fn: Callable[[], Any]) -> tuple[Any, bool]:
        """Runs step `name` unless it completed before, and records it.

        Returns:
          (its result, whether it ran now).
        """
        if self.done(name):
            return self.result(name), False
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
        self._state["steps"][name] = {"result": result, "seconds": round(seconds, 2)}
        self._session["steps_run"].append(name)
        self.save()
        return result, True

    def step_seconds(self) -> dict[str, float]:
        """Seconds each completed step took when it ran."""
        return {name: step["seconds"] for name, step in self._state["steps"].items()}

    def sessions(self) -> list[dict[str, Any]]:
        """Every invocation of the demo on this directory, with its wall time and peak memory."""
        return list(self._state["sessions"])

    def save(self) -> None:
        """Writes the ledger (atomically), with this session's wall time and peak memory so far."""
        self._session["seconds"] = round(time.time() - self._session["started"], 2)
        self._session["peak_memory_mb"] = peak_memory_mb()
        corpus_io.write_json(self.path, self._state)
