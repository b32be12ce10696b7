"""Frozen, flat, typed configuration: one dataclass per stage, each field commented.

Every config is saved as ``dataclasses.asdict(cfg)`` (checkpoints, manifests), so fields hold only
JSON types: int, float, bool, str.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------
# ModelConfig: the sequence encoder (toolkit/model.py). Saved inside every checkpoint.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    n_items: int  # catalogue size; ids 1..n_items, PAD = 0, MASK = n_items + 1
    max_len: int = 50  # longest input row; also the size of the position embedding table
    d_model: int = 64  # width of embeddings and hidden states
    n_heads: int = 2  # attention heads; must divide d_model
    n_layers: int = 2  # transformer blocks
    dropout: float = 0.2  # dropout on embeddings, attention weights and block outputs
    causal: bool = True  # True: SASRec-like, left to right; False: bidirectional cloze (BERT4Rec)
    feedback_input: bool = False  # add a learned skip / no-skip embedding at every input position
    ffn_mult: int = 4  # feed-forward hidden width = ffn_mult * d_model
    mask_prob: float = 0.15  # cloze masking probability, used only when causal is False
    init_std: float = 0.02  # std of the normal init of linear and embedding weights

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ValueError(f"ModelConfig.n_items must be >= 1, got {self.n_items}")
        if self.max_len < 1:
            raise ValueError(f"ModelConfig.max_len must be >= 1, got {self.max_len}")
        if self.d_model < 1 or self.n_heads < 1 or self.d_model % self.n_heads:
            raise ValueError(
                f"ModelConfig.d_model ({self.d_model}) must be a positive multiple of "
                f"n_heads ({self.n_heads})"
            )
        if self.n_layers < 1 or self.ffn_mult < 1:
            raise ValueError("ModelConfig.n_layers and ffn_mult must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"ModelConfig.mask_prob must be in (0, 1), got {self.mask_prob}")


# ---------------------------------------------------------------------------------------------
# PrepConfig: raw listening logs -> a prepared dataset (toolkit/prep.py). Saved in manifest.json.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrepConfig:
    format: str = "auto"  # input preset: auto, generic, spotify, spotify-extended, mssd, lastfm, piki, sequences
    cols: tuple[str, ...] = ()  # generic format: "role=column" pairs (roles: user ts track played_ms duration_ms skipped session artist title)
    user: str | None = None  # user id for every play, for a single listener's export
    name: str | None = None  # dataset name in the workspace; default derived from the input path
    session_gap_s: int = 1800  # a pause strictly longer than this (seconds) starts a new session
    skip_ms: int = 30_000  # a play shorter than this is a skip (when no explicit flag exists)
    skip_ratio: float | None = None  # when track length is known: played / length below this is a skip
    collapse_repeats: bool = False  # drop a play of the same track as the play right before it
    min_session_len: int = 2  # sessions with fewer plays (after the other filters) are dropped
    min_item_plays: int = 1  # tracks with fewer plays in the whole log are dropped
    keep_podcasts: bool = False  # keep podcast / audiobook rows of the Spotify extended history
    max_play_ms: int | None = None  # plays longer than this are dropped as overlong (None: keep all)
    split: str = "auto"  # 'time': sessions by start time into train/valid/test; 'last': leave-last-out (leaky); 'auto': time, or last for formats without time
    valid_frac: float = 0.1  # share of sessions in the validation window
    test_frac: float = 0.1  # share of sessions in the test window
    max_len: int = 50  # width of the sequence arrays; longer sessions are cut into windows
    min_ts: str = "1990-01-01"  # plays before this date are impossible and dropped
    memory_limit: str = "2GB"  # DuckDB memory limit; past it DuckDB spills to the workspace tmp/
    threads: int = 0  # DuckDB threads (0: all cores)

    def __post_init__(self) -> None:
        problems = []
        if self.session_gap_s <= 0:
            problems.append(f"--session-gap must be > 0 seconds, got {self.session_gap_s}")
        if self.skip_ms < 0:
            problems.append(f"--skip-ms must be >= 0, got {self.skip_ms}")
        if self.skip_ratio is not None and not 0 < self.skip_ratio <= 1:
            problems.append(f"--skip-ratio must be in (0, 1], got {self.skip_ratio}")
        if self.min_session_len < 1 or self.min_item_plays < 1:
            problems.append("--min-session-len and --min-item-plays must be >= 1")
        if self.split not in ("auto", "time", "last"):
            problems.append(f"--split must be 'auto', 'time' or 'last', got {self.split!r}")
        if not (0 <= self.valid_frac < 1 and 0 < self.test_frac < 1 and self.valid_frac + self.test_frac < 1):
            problems.append("--valid-frac and --test-frac must be fractions with valid + test < 1 and test > 0")
        if self.max_len < 2:
            problems.append(f"--max-len must be >= 2, got {self.max_len}")
        if problems:
            from toolkit.errors import ConfigError

            raise ConfigError("; ".join(problems))
