"""The fuzz suite runs `class-jax train` on the trainer tests' tiny model, which lives in tests/trainer."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "trainer"))
