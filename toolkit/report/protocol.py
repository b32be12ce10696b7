"""How a report scores runs: which split and positions, what the ranking leaves out, and how the
paired bootstrap runs.  The protocol names the cache of per-query outcomes beside each run."""

from __future__ import annotations

from dataclasses import dataclass, replace

from toolkit.config import RESAMPLE, Evaluation, TrainConfig
from toolkit.errors import ConfigError

EVAL_VERSION = 2  # bump when the per-query outcomes change meaning (invalidates the caches)


@dataclass(frozen=True)
class Protocol:
    split: str = "test"  # the split scored: test (the report) or valid
    positions: str = "all"  # all: every position with a known next play; last: the last kept play per session
    # remove tracks already played in the session from the ranking; None: as the runs recorded it (their
    # validation protocol, ``for_runs``), True / False: for every run, whatever it recorded
    exclude_played: bool | None = None
    baseline: str | None = None  # group key to compare against; None: 'sasrec / all' when present
    bootstrap: int = 1000  # paired bootstrap replicates
    seed: int = 0  # bootstrap seed
    # what the bootstrap resamples: listeners (with all their sessions), sessions, or auto (listeners
    # when the log has them: more than one, and not one per session)
    resample: str = "auto"
    allow_unfinished: bool = False  # score an unfinished run's best checkpoint instead of refusing

    def __post_init__(self) -> None:
        Evaluation(self.split, self.positions)  # checks them
        if self.bootstrap < 100:
            raise ConfigError(f"--bootstrap {self.bootstrap}: use at least 100 replicates")
        if self.resample not in RESAMPLE:
            raise ConfigError(f"--resample {self.resample}: choose {', '.join(RESAMPLE)}")

    @property
    def evaluation(self) -> Evaluation:
        return Evaluation(self.split, self.positions, bool(self.exclude_played))

    def for_runs(self, configs: list[TrainConfig], ids: list[str] = ()) -> Protocol:
        """This protocol with what it leaves open (``exclude_played``) as the runs recorded it; runs
        that recorded different protocols are refused, so no report ranks its groups two ways."""
        if self.exclude_played is not None:
            return self
        recorded = {cfg.validation.exclude_played for cfg in configs}
        if len(recorded) > 1:
            excl = [i for i, c in zip(ids, configs) if c.exclude_played][:3]
            raise ConfigError(f"the runs were validated with different protocols (exclude_played for "
                              f"{', '.join(excl) or 'some'}, not for the others); pass --exclude-played or "
                              "--include-played to rank every run one way, or report them apart")
        return replace(self, exclude_played=recorded.pop() if recorded else False)

    def cache_key(self) -> str:
        e = self.evaluation
        return f"{e.split}-{e.positions}-{'excl' if e.exclude_played else 'incl'}-v{EVAL_VERSION}"
