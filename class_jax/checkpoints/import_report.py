"""What an import did: its source, the dtypes it converted, and every parameter it had to create.

Public T5 / mT5 / ReAtt checkpoints lack the pooled retriever (`encoder/retriever/*`). Importing one for a
pooled-mode model creates those parameters here — never elsewhere — and lists each in the report, which is
printed by the converter and written next to the parameters as `import_report.json`.
"""

import dataclasses
import json
import pathlib
from typing import Any, Optional

import numpy as np

from class_jax.checkpoints import param_layout
from class_jax.models.config import ModelConfig

REPORT_FILE = "import_report.json"


@dataclasses.dataclass
class ImportReport:
    """The record of one import.

    Attributes:
      source: the path read.
      source_format: "hf", "t5x" or "class_jax".
      source_dtypes: dtype name -> number of tensors of that dtype in the source (all are stored as float32).
      initialised: one entry per created parameter: {"param", "shape", "init"}.
      notes: decisions the importer took that a user should know (defaults it assumed, ignored tensors, ...).
      source_hf_config: the source's HF config.json, kept so an export can reproduce its architecture keys.
    """

    source: str
    source_format: str
    source_dtypes: dict[str, int] = dataclasses.field(default_factory=dict)
    initialised: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    source_hf_config: Optional[dict[str, Any]] = None

    def count_dtypes(self, arrays: Any) -> None:
        """Adds the dtypes of an iterable of arrays to `source_dtypes`."""
        for array in arrays:
            name = np.dtype(array.dtype).name
            self.source_dtypes[name] = self.source_dtypes.get(name, 0) + 1

    def summary(self) -> str:
        """Multi-line human-readable account (what the converter prints)."""
        dtypes = ", ".join(f"{count} {name}" for name, count in sorted(self.source_dtypes.items()))
        lines = [f"imported {self.source_format} checkpoint {self.source} ({dtypes or 'no tensors'})"]
        for entry in self.initialised:
            lines.append(f"  NEW PARAMETER {entry['param']} {tuple(entry['shape'])}: initialised {entry['init']}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ImportReport":
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def write(self, directory: pathlib.Path) -> None:
        (pathlib.Path(directory) / REPORT_FILE).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def read(cls, directory: pathlib.Path) -> Optional["ImportReport"]:
        """The report stored in a class_jax checkpoint directory, or None when it has none."""
        path = pathlib.Path(directory) / REPORT_FILE
        if not path.is_file():
            return None
        return cls.from_json(json.loads(path.read_text()))


@dataclasses.dataclass
class ImportedCheckpoint:
    """Parameters and config read from a foreign checkpoint.

    Attributes:
      params: flat float32 parameters (`param_layout` paths), complete for `config`.
      config: our hyper-parameters.
      report: what the import did (new parameters, notes).
      spiece_model: the source's sentencepiece model file, when it has one.
    """

    params: param_layout.FlatParams
    config: ModelConfig
    report: ImportReport
    spiece_model: Optional[pathlib.Path] = None


def add_new_parameters(flat: param_layout.FlatParams, config: ModelConfig, report: ImportReport,
                       seed: int = 0) -> None:
    """Creates the retriever parameters `config` needs but the source lacks, recording each in `report`.

    Projections get N(0, std = emb_dim ** -0.5): their input is an RMS-normalised vector (coordinates of order
    1), so this keeps the projected coordinates of order 1, as T5X's fan-in init of the attention kernels does;
    the shared norm's scale starts at 1 (identity), like every T5 norm.

    Args:
      flat: the imported parameters (flat paths), completed in place.
      config: the target model.
      report: receives one `initialised` entry per created parameter.
      seed: numpy seed, recorded so the import is reproducible.
    """
    expected = param_layout.expected_shapes(config)
    rng = np.random.default_rng(seed)
    std = config.emb_dim ** -0.5
    for path in param_layout.RETRIEVER_PARAMS:
        if path not in expected or path in flat:
            continue
        shape = expected[path]
        if path.endswith("/scale"):
            flat[path] = np.ones(shape, np.float32)
            init = "ones"
        else:
            flat[path] = rng.normal(0.0, std, size=shape).astype(np.float32)
            init = f"normal(mean=0, std=emb_dim**-0.5={std:.6g}, numpy seed={seed})"
        report.initialised.append({"param": path, "shape": list(shape), "init": init})
