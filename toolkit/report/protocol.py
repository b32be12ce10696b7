"""How a report scores runs: which split and positions, what the ranking leaves out, and how the
paired bootstrap runs.  The protocol names the cache of per-query outcomes beside each run."""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.config import RESAMPLE, SCORED_SPLITS
from toolkit.errors import ConfigError
from toolkit.evaluate import POSITIONS

EVAL_VERSION = 2  # bump when the per-query outcomes change meaning (invalidates the caches)


@dataclass(frozen=True)
class Protocol:
    split: str = "test"  # the split scored: test (the report) or valid
    positions: str = "all"  # all: every position with a known next play; last: the last kept play per session
    exclude_played: bool = False  # remove tracks already played in the session from the ranking
    baseline: str | None = None  # group key to compare against; None: 'sasrec / all' when present
    bootstrap: int = 1000  # paired bootstrap replicates
    seed: int = 0  # bootstrap seed
    # what the bootstrap resamples: listeners (with all their sessions), sessions, or auto (listeners
    # when the log has them: more than one, and not one per session)
    resample: str = "auto"
    allow_unfinished: bool = False  # score an unfinished run's best checkpoint instead of refusing

    def __post_init__(self) -> None:
        if self.split not in SCORED_SPLITS:
            raise ConfigError(f"--split {self.split}: choose {' or '.join(SCORED_SPLITS)}")
        if self.positions not in POSITIONS:
            raise ConfigError(f"--positions {self.positions}: choose {' or '.join(POSITIONS)}")
        if self.bootstrap < 100:
            raise ConfigError(f"--bootstrap {self.bootstrap}: use at least 100 replicates")
        if self.resample not in RESAMPLE:
            raise ConfigError(f"--resample {self.resample}: choose {', '.join(RESAMPLE)}")

    def cache_key(self) -> str:
        return f"{self.split}-{self.positions}-{'excl' if self.exclude_played else 'incl'}-v{EVAL_VERSION}"
