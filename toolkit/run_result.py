"""A finished run's ``result.json`` as a record: what ``train`` returns and writes.

``train`` builds a ``TrainResult`` when a run finishes and writes its JSON form; a finished run
trained before is read back into one (``reused``), its keys checked there, so a damaged file fails
in one line naming it.  Field names are the JSON keys and ``to_json`` writes exactly the keys written
before this record existed.  (A run stopped by a diverging loss writes a shorter ``failed`` record,
which no reader takes for a result.)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from toolkit.errors import DamagedArtifactError


@dataclass(frozen=True)
class TrainResult:
    """A finished run: its settings in brief, the best validation epoch's metrics, and where it lies."""

    id: str
    status: str  # "finished"
    dataset: str
    model: str
    feedback: str
    seed: int
    epochs_done: int
    best_epoch: int
    valid: dict[str, float]  # the best epoch's validation metrics: ndcg@10, hr@10, skip_hr@10, n_pos, ...
    wall_s: float  # training time, over every resumption
    git_commit: str | None
    path: str  # the run's folder when it was trained
    world_size: int | None = None  # processes that trained it; absent from results of earlier versions
    reused: bool = False  # finished before this call (not saved)

    def to_json(self) -> dict:
        """result.json's content (``reused`` is not saved; an absent ``world_size`` stays absent)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "reused"}
        if self.world_size is None:
            del out["world_size"]
        return out

    @classmethod
    def from_json(cls, data: Any, path: Path | str, reused: bool = False) -> TrainResult:
        """The record of ``data`` (a finished run's result.json, parsed), or a one-line error naming ``path``."""
        if not isinstance(data, dict):
            raise _damaged(path, f"holds a {type(data).__name__}, not an object")
        values: dict[str, Any] = {}
        for name, kinds in _TYPES.items():
            if name not in data:
                if name in ("world_size",):
                    continue
                raise _damaged(path, f"has no {name!r}")
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise _damaged(path, f"{name!r} is {type(value).__name__}")
            values[name] = value
        return cls(**values, reused=reused)


_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "status": (str,), "dataset": (str,), "model": (str,), "feedback": (str,), "seed": (int,),
    "epochs_done": (int,), "best_epoch": (int,), "valid": (dict,), "wall_s": (int, float),
    "git_commit": (str, type(None)), "path": (str,), "world_size": (int,),
}
assert set(_TYPES) == {f.name for f in fields(TrainResult)} - {"reused"}, "every saved field has its JSON type"


def _damaged(path: Path | str, what: str) -> DamagedArtifactError:
    return DamagedArtifactError(f"{path}: not a finished run's result ({what}); the file is damaged: delete the "
                                "run's folder and train it again (`toolkit train`), or pick another run")
