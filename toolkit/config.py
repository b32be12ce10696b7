"""Frozen, flat, typed configuration: one dataclass per stage, each field commented.

Every config is saved as ``dataclasses.asdict(cfg)`` (checkpoints, manifests), so fields hold only
JSON types: int, float, bool, str.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

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
    encoder: str = "transformer"  # transformer (SASRec, BERT4Rec) or gru (GRU4Rec: recurrent, causal, no positions)
    feedback_input: bool = False  # add a learned skip / no-skip embedding at every input position
    ffn_mult: int = 4  # feed-forward hidden width = ffn_mult * d_model
    mask_prob: float = 0.15  # cloze masking probability, used only when causal is False
    repeat_head: bool = False  # add a learned score to tracks already played in the row (causal models)
    # repeat head: also score the last ``successors`` tracks that followed the current track in the
    # listener's earlier plays (the batch's ``succ``; needs repeat_head); 0: off
    successors: int = 0
    # repeat head: also score the ``transitions`` tracks that most often followed the current track in
    # the train rows, by how often (a learned first-order Markov term; the model's ``trans_*`` buffers); 0: off
    transitions: int = 0
    # leading columns of a full row that hold the listener's plays before the session (toolkit/history.py):
    # the last max_len - history columns are the session; a narrower row is all session
    history: int = 0
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
        if self.repeat_head and not self.causal:
            raise ValueError("ModelConfig.repeat_head needs a causal model (it reads the plays before each position)")
        if self.successors and not self.repeat_head:
            raise ValueError("ModelConfig.successors extends the repeat head: set repeat_head too")
        if not 0 <= self.history < self.max_len:
            raise ValueError(f"ModelConfig.history must be in [0, max_len), got {self.history}")
        if self.encoder not in ("transformer", "gru") or (self.encoder == "gru" and not self.causal):
            raise ValueError(f"ModelConfig.encoder must be transformer, or gru with causal=True; got {self.encoder}")
        if self.successors < 0:
            raise ValueError(f"ModelConfig.successors must be >= 0, got {self.successors}")
        if self.transitions < 0 or (self.transitions and not self.repeat_head):
            raise ValueError(f"ModelConfig.transitions must be >= 0 and needs repeat_head, got {self.transitions}")
        if not (_finite(self.init_std) and self.init_std > 0):
            raise ValueError(f"ModelConfig.init_std must be a finite number > 0, got {self.init_std}")


# ---------------------------------------------------------------------------------------------
# PrepConfig: raw listening logs -> a prepared dataset (toolkit/prep.py). Saved in manifest.json.
# ---------------------------------------------------------------------------------------------


# how prep cuts sessions into train / valid / test (toolkit/splits.py); see PrepConfig.split
SPLIT_MODES = ("auto", "time", "listener", "last")


@dataclass(frozen=True)
class PrepConfig:
    format: str = "auto"  # input preset: readers.FORMATS (auto, generic, spotify, ..., listenbrainz, deezer; docs/formats.md)
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
    # 'time': all sessions cut at the same instants into train/valid/test; 'listener': each listener's own
    # last sessions are valid/test; 'last': leave-last-out (leaky); 'auto': listener when a global cut would
    # test listeners without training plays (toolkit/splits.py), else time; last for formats without time
    split: str = "auto"
    valid_frac: float = 0.1  # share of sessions in the validation window
    test_frac: float = 0.1  # share of sessions in the test window
    max_len: int = 20  # width of the sequence arrays (the paper uses 20); longer sessions are cut into windows
    min_ts: str = "1990-01-01"  # plays before this date are impossible and dropped
    memory_limit: str = "1GB"  # DuckDB memory limit; past it DuckDB spills to the workspace tmp/
    threads: int = 0  # DuckDB threads (0: all cores)
    # memory for prep's own arrays (DuckDB's memory_limit comes on top): a log too large for it is
    # processed in buckets of listeners, one at a time; the dataset written is the same either way
    memory: str = "1.5GB"

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
        if self.split not in SPLIT_MODES:
            problems.append(f"--split must be {_either(SPLIT_MODES, quote=True)}, got {self.split!r}")
        if not (0 <= self.valid_frac < 1 and 0 < self.test_frac < 1 and self.valid_frac + self.test_frac < 1):
            problems.append("--valid-frac and --test-frac must be fractions with valid + test < 1 and test > 0")
        if self.max_len < 2:
            problems.append(f"--max-len must be >= 2, got {self.max_len}")
        if self.max_play_ms is not None and self.max_play_ms < 1:
            problems.append(f"--max-play-ms must be >= 1 ms when given (leave it out to keep every play), "
                            f"got {self.max_play_ms}")
        if not _memory_ok(self.memory_limit):
            problems.append(f"--memory-limit {self.memory_limit!r}: use a size with a unit, at least 64MB, "
                            "such as 1GB, 512MB or 2GiB")
        if (memory_bytes(self.memory) or 0) < 1:
            problems.append(f"--memory {self.memory!r}: use a size with a unit, such as 2GB, 512MB or 4GiB")
        if self.threads < 0:
            problems.append(f"threads must be >= 0 (0: all cores), got {self.threads}")
        if self.name is not None and not 0 < len(self.name) <= NAME_MAX:
            problems.append(f"--name must be 1 to {NAME_MAX} characters, got {len(self.name)}")
        if self.user is not None and not self.user.strip():
            problems.append("--user must not be empty; leave it out when the log has a user column")
        if not _date_ok(self.min_ts):
            problems.append(f"min_ts {self.min_ts!r}: use a date as YYYY-MM-DD")
        if problems:
            from toolkit.errors import ConfigError

            raise ConfigError("; ".join(problems))


# ---------------------------------------------------------------------------------------------
# TrainConfig: a prepared dataset -> a trained run (toolkit/train.py). Saved as runs/<id>/config.json.
# ---------------------------------------------------------------------------------------------

MODELS = ("sasrec", "bert4rec", "gru4rec", "pop", "markov", "sknn", "repeat")
FEEDBACK_MODES = ("all", "positives-only", "contrastive", "feedback-input", "negative-target")
NEURAL = ("sasrec", "bert4rec", "gru4rec")
# the closed sets of the other TrainConfig text fields: checked below, offered as choices by the CLI
TARGETS = ("next-item", "next-pos", "next-kept")
LOSSES = ("auto", "ce", "sampled", "shared", "bce")
SAMPLERS = ("popularity", "uniform")
CONTEXTS = ("input", "output", "score")
SKIP_NEGATIVES = ("session", "seen")
DEVICES = ("auto", "cpu", "cuda")
NEGATIVES_ON = ("auto", "host", "device")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    dataset: str | None = None  # prepared dataset name; None: the most recently prepared one
    # sasrec (causal), bert4rec (masked), gru4rec (recurrent); count baselines: pop (most popular), markov
    # (item-to-item), sknn (V-SKNN session neighbours), repeat (the session's own plays, then markov)
    model: str = "sasrec"
    feedback: str = "all"  # '+'-joined modes: all, positives-only, contrastive, feedback-input, negative-target
    # causal target: next-item (every play), next-pos (next non-skipped play, further on when the next is
    # skipped) or next-kept (the next play only where it was kept: no position is trained towards a skip)
    target: str = "next-item"
    # next-item loss: ce (full softmax), sampled (sampled softmax, logQ, negatives per row), shared (sampled
    # softmax, logQ, one set of negatives per step shared by every position), bce, auto (ce, else sampled)
    loss: str = "auto"
    negatives: int = 512  # sampled / bce: negatives per row (the numba kernel); shared: per step (torch)
    # ce: MiB of float32 catalogue scores one step may hold; past it the full softmax is computed in
    # catalogue chunks (toolkit/full_softmax.py: the same loss, scores recomputed in backward). 512 is
    # twice the scores at which auto stops choosing ce, so every auto run trained with ce stays plain
    loss_memory_mb: float = 512.0
    # popularity by default: on Spotify (166k tracks) uniform negatives were too easy (validation
    # NDCG@10 0.006 after 2 epochs) while popularity^0.75 with logQ reached 0.041 in 6
    sampler: str = "popularity"  # negative sampler: popularity (popularity^beta of train plays) or uniform
    sampler_beta: float = 0.75  # exponent of the popularity sampler
    # contrastive defaults chosen on validation data (synthetic and Spotify, see docs/cli.md): alpha 0.5 with
    # the output context lowered NDCG@10 several-fold; alpha 0.1 with the input embedding e_t helped
    alpha: float = 0.1  # contrastive: weight of the InfoNCE term (the next-item term has weight 1)
    tau: float = 0.1  # contrastive: temperature of cos(x, c) / tau
    # contrastive context: input (embedding e_t of the play) or output (model output y_i), both compared by
    # cos / tau as in the paper; score: y_i by dot product, the ranking's own scores (tau unused)
    context: str = "input"
    # contrastive negatives: session (every skipped play of the session, as in the paper) or seen (only
    # the skips up to the query's position: the ones the model has read)
    skip_negatives: str = "session"
    neg_weight: float = 0.5  # negative-target: weight of the unlikelihood term on skipped next tracks
    d_model: int = 64  # model width
    n_layers: int = 2  # transformer blocks
    n_heads: int = 2  # attention heads
    dropout: float = 0.2  # dropout
    mask_prob: float = 0.2  # bert4rec: share of plays hidden in training
    epochs: int = 10  # passes over the train rows
    batch_size: int = 128  # rows per step
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_steps: int = 100  # linear warm-up, then the schedule
    lr_schedule: str = "constant"  # after warm-up: constant, or cosine (decay to 0 at the last planned step)
    grad_clip: float = 5.0  # max gradient norm
    patience: int = 3  # stop after this many epochs without a better validation NDCG@10
    max_steps: int | None = None  # stop after this many optimiser steps (smoke tests)
    valid_sessions: int = 0  # validate on this many sessions drawn with the seed (0: all); full ranking either way
    seed: int = 0  # one seed for numpy, the numba samplers and torch
    device: str = "auto"  # auto (cuda when present), cpu or cuda
    compile: bool = False  # torch.compile the model
    # where per-row negatives (sampled, bce) are drawn: auto (on the GPU when training on one, else the
    # numba kernel on the host), host (the numba kernel) or device (torch on the training device, CPU too);
    # the same distribution either way (toolkit/sampling.py), so it is a runtime knob, not part of the run id
    negatives_on: str = "auto"
    amp: bool = False  # bfloat16 autocast for the training forward pass and losses (validation stays float32)
    # a learned score for tracks already played in the row, by how far back and in what context (causal
    # models; listeners replay tracks, and the dot product with track embeddings learns that slowly).
    # None: on wherever it applies (sasrec and gru4rec without negative-target, with --loss auto, ce or
    # shared; auto then takes the shared softmax where the full one does not fit), the setting the study
    # chose on validation (benchmarks/README.md, "the listener's past"); resolved when the config is made
    repeat_head: bool | None = None
    # with the repeat head, also score the last N tracks that followed the current track in the listener's
    # earlier plays (albums and playlists come back in their order); the repeat baseline ranks them first.
    # None: DEFAULT_SUCCESSORS for the repeat head and the repeat baseline, else 0
    successors: int | None = None
    # with the repeat head, also score the N tracks that most often followed the current track in the
    # train rows, with a learned weight on how often (a first-order transition count inside the model)
    transitions: int = 0
    # the listener's last plays before the session, read as context by every query of the session
    # (0: the session alone); the repeat baseline reads them too (toolkit/history.py)
    history: int = 0
    # validation ranks without the tracks already played in the session: the published ML-1M protocol
    # (a user rates a film once); music is re-played, so the default keeps them
    exclude_played: bool = False

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(sorted(self.feedback.split("+")))

    def __post_init__(self) -> None:
        from toolkit.errors import ConfigError

        modes = set(self.feedback.split("+"))
        if self.repeat_head is None:  # frozen: the resolved value is what the run records
            object.__setattr__(self, "repeat_head", self.model in ("sasrec", "gru4rec") and "negative-target" not in modes
                               and self.loss in ("auto", "ce", "shared"))
        if self.successors is None:
            reads = self.repeat_head or self.model == "repeat"
            object.__setattr__(self, "successors", DEFAULT_SUCCESSORS if reads else 0)
        problems = []
        if self.model not in MODELS:
            problems.append(f"--model {self.model}: choose one of {', '.join(MODELS)}")
        unknown = [m for m in self.feedback.split("+") if m not in FEEDBACK_MODES]
        if unknown:
            problems.append(f"--feedback {self.feedback}: unknown mode(s) {unknown}; modes are {', '.join(FEEDBACK_MODES)}")
        if len(modes) > 1 and "all" in modes:
            problems.append("--feedback: 'all' is the skip-blind baseline and does not combine with other modes")
        if "positives-only" in modes and modes & {"negative-target", "feedback-input"}:
            problems.append("--feedback positives-only removes skips, so it cannot combine with a mode that uses them")
        if "positives-only" in modes and "contrastive" in modes and self.context != "input":
            # the model never reads a skipped play; only the play embeddings e_t can be contrasted with them
            problems.append("--feedback positives-only+contrastive hides skips from the model: use --context input")
        if self.model not in NEURAL and modes - {"all", "positives-only"}:
            problems.append(f"--model {self.model} is a count baseline: use --feedback all or positives-only")
        if self.model == "bert4rec" and self.target != "next-item":
            problems.append(f"--model bert4rec trains on masked plays; --target {self.target} applies to causal models only")
        if self.target == "next-kept" and "positives-only" in modes:
            problems.append("--feedback positives-only trains on the next kept play already; drop --target next-kept")
        if self.repeat_head and (self.model not in ("sasrec", "gru4rec") or "negative-target" in modes):
            problems.append("--repeat-head needs a causal neural model (sasrec, gru4rec) and no negative-target mode")
        if self.successors and self.model in NEURAL and not self.repeat_head:
            problems.append("successors extends the repeat head: set repeat_head=true too")
        if self.successors < 0:
            problems.append(f"successors={self.successors}: use 0 (off) or how many earlier successors to read")
        if self.successors and self.model in ("pop", "markov", "sknn"):
            problems.append(f"--model {self.model} does not read successors; leave successors at 0")
        if self.transitions < 0:
            problems.append(f"transitions={self.transitions}: use 0 (off) or how many frequent successors to read")
        if self.transitions and not self.repeat_head:
            problems.append("transitions extends the repeat head (sasrec, gru4rec): set repeat_head=true too, or leave transitions at 0")
        if self.history < 0:
            problems.append(f"history={self.history}: use 0 (the session alone) or the number of earlier plays to read")
        if self.history and self.model in ("pop", "markov", "sknn"):
            problems.append(f"--model {self.model} does not read the listener's history; leave history at 0")
        for flag, value, allowed in (("--target", self.target, TARGETS), ("--loss", self.loss, LOSSES),
                                     ("--sampler", self.sampler, SAMPLERS), ("--context", self.context, CONTEXTS),
                                     ("--skip-negatives", self.skip_negatives, SKIP_NEGATIVES),
                                     ("--device", self.device, DEVICES),
                                     ("--set negatives_on=", self.negatives_on, NEGATIVES_ON),
                                     ("--lr-schedule", self.lr_schedule, LR_SCHEDULES)):
            if value not in allowed:
                shown = f"{flag}{value}" if flag.endswith("=") else f"{flag} {value}"
                problems.append(f"{shown}: choose {_either(allowed)}")
        problems += _range_problems(self)
        if problems:
            raise ConfigError("; ".join(problems))


# the report's protocol (toolkit/report/protocol.py Protocol): defined here, with no heavy import, so the CLI can
# offer them as choices without loading torch
SCORED_SPLITS = ("test", "valid")  # the splits a report can score
POSITIONS = ("all", "last")  # all: every position with a known next play; last: the last kept play per session
RESAMPLE = ("auto", "listeners", "sessions")  # what the paired bootstrap resamples

NAME_MAX = 100  # longest dataset name (it names a folder)


def _either(values: tuple[str, ...], quote: bool = False) -> str:
    """'a, b or c' (quoted with ``quote``): the choices an error message offers."""
    shown = [repr(v) if quote else v for v in values]
    return ", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else "".join(shown)
SEED_MAX = 2**32 - 1  # numpy's seed range

# TrainConfig fields with a flag of their own on `toolkit train`; the others are set with --set key=value
TRAIN_FLAGS = frozenset({
    "negatives", "alpha", "tau", "neg_weight", "d_model", "n_layers", "n_heads", "dropout", "epochs", "batch_size",
    "lr", "patience", "max_steps", "valid_sessions", "seed",
})

# (field, test, what the value must be, and the fix); each numeric TrainConfig field is checked here
_TRAIN_RANGES = (
    ("negatives", lambda v: v >= 1, "an integer >= 1", "the number of sampled negatives per row"),
    ("loss_memory_mb", lambda v: v > 0, "a finite number > 0",
     "MiB of catalogue scores one full-softmax step may hold, e.g. 512; less trains in smaller chunks"),
    ("sampler_beta", lambda v: v >= 0, "a finite number >= 0", "0 samples uniformly, 1 by popularity"),
    ("alpha", lambda v: v >= 0, "a finite number >= 0",
     "a negative weight would reward skipped tracks; 0 turns the contrastive term off"),
    ("tau", lambda v: v > 0, "a finite number > 0", "the contrastive temperature, e.g. 0.1"),
    ("neg_weight", lambda v: v >= 0, "a finite number >= 0", "a negative weight would reward skipped tracks"),
    ("d_model", lambda v: v >= 1, "an integer >= 1", "the model width, e.g. 64"),
    ("n_layers", lambda v: v >= 1, "an integer >= 1", "the number of blocks, e.g. 2"),
    ("n_heads", lambda v: v >= 1, "an integer >= 1", "the number of attention heads, e.g. 2"),
    ("dropout", lambda v: 0 <= v < 1, "a number in [0, 1)", "e.g. 0.2; 0 turns dropout off"),
    ("mask_prob", lambda v: 0 < v < 1, "a number in (0, 1)", "the share of plays hidden, e.g. 0.2"),
    ("epochs", lambda v: v >= 1, "an integer >= 1", "the number of passes over the train rows"),
    ("batch_size", lambda v: v >= 1, "an integer >= 1", "rows per step, e.g. 128"),
    ("lr", lambda v: v > 0, "a finite number > 0", "e.g. 1e-3"),
    ("weight_decay", lambda v: v >= 0, "a finite number >= 0", "e.g. 0.01; 0 turns it off"),
    ("warmup_steps", lambda v: v >= 0, "an integer >= 0", "0 turns the warm-up off"),
    ("grad_clip", lambda v: v > 0, "a finite number > 0", "the largest gradient norm, e.g. 5.0"),
    ("patience", lambda v: v >= 1, "an integer >= 1", "epochs without a better validation score before stopping"),
    ("max_steps", lambda v: v >= 1, "an integer >= 1 when given",
     "leave it out to train the planned epochs (0 would record an untrained model as finished)"),
    ("valid_sessions", lambda v: v >= 0, "an integer >= 0", "0 validates on every session"),
    ("seed", lambda v: 0 <= v <= SEED_MAX, f"an integer in [0, {SEED_MAX}]", "e.g. 0"),
)


def option_name(key: str) -> str:
    """How the user sets a TrainConfig field on `toolkit train`: its flag, else the --set key."""
    return f"--{key.replace('_', '-')}" if key in TRAIN_FLAGS else f"--set {key}="


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _range_problems(cfg: "TrainConfig") -> list[str]:
    problems = []
    for key, ok, must, fix in _TRAIN_RANGES:
        value = getattr(cfg, key)
        if value is None and key == "max_steps":
            continue
        if not (_finite(value) and ok(value)):
            shown = option_name(key)
            shown = f"{shown}{value}" if shown.endswith("=") else f"{shown} {value}"
            problems.append(f"{shown}: must be {must} ({fix})")
    if _finite(cfg.d_model) and _finite(cfg.n_heads) and cfg.n_heads >= 1 and cfg.d_model % cfg.n_heads:
        problems.append(f"--d-model {cfg.d_model} must be a multiple of --n-heads {cfg.n_heads} "
                        "(each head reads d_model / n_heads dimensions), e.g. --d-model 64 --n-heads 2")
    return problems


# DuckDB memory sizes: a number and a unit (KB = 1000 bytes, KiB = 1024 bytes; B, K, M, G, T alone too)
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(b|bytes?|k|m|g|t|kb|mb|gb|tb|kib|mib|gib|tib|"
                     r"kilobytes?|megabytes?|gigabytes?|terabytes?)\s*$", re.IGNORECASE)
_UNIT = {"b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
MEMORY_MIN = 64 * 10**6  # below this DuckDB cannot even read a file's first blocks


def memory_bytes(text: str) -> float | None:
    """Bytes of a DuckDB memory size such as '1GB', '512MB' or '2GiB'; None when it is not one."""
    m = _MEMORY.match(text) if isinstance(text, str) else None
    if not m:
        return None
    unit = m.group(2).lower()
    base = 1 if unit.startswith("byte") or unit == "b" else (
        2 ** (10 * "kmgt".index(unit[0]) + 10) if unit.endswith("ib") else _UNIT[unit[0]])
    return float(m.group(1)) * base


def _memory_ok(text: str) -> bool:
    size = memory_bytes(text)
    return size is not None and size >= MEMORY_MIN


def _date_ok(text: str) -> bool:
    from datetime import date

    try:
        date.fromisoformat(str(text)[:10])
    except ValueError:
        return False
    return True


# Settings added after the first release, with the value that reproduces the behaviour from before
# they existed.  At that value a setting stays out of a run's identity (train.run_id), so adding a
# setting never renames, and so never retrains, a finished run.
# what the repeat head and the repeat baseline read by default (the study's choice on validation: 10
# successors doubled both on the Spotify logs, 5 did almost as well; benchmarks/README.md)
DEFAULT_SUCCESSORS = 10

LATER_SETTINGS: dict[str, object] = {"lr_schedule": "constant", "amp": False, "exclude_played": False,
                                     "repeat_head": False, "successors": 0, "history": 0, "transitions": 0,
                                     "skip_negatives": "session", "loss_memory_mb": 512.0}


# Settings that change how a run is computed, never what it learns from or how: never part of its identity,
# so the same run may be continued with another value
RUNTIME_SETTINGS = frozenset({"negatives_on"})


def identity(cfg: TrainConfig) -> dict:
    """The settings that name a run: every field, less later ones left at their earlier behaviour and
    the runtime settings."""
    return {k: v for k, v in asdict(cfg).items()
            if k not in RUNTIME_SETTINGS and not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])}


def parse_setting(value: str):
    """A ``key=value`` setting's value from the command line: int, float, bool, None, else text."""
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(value.lower(), value)


def _fits(value, kind: str) -> bool:
    """Whether a parsed ``--set`` value suits a field annotated ``kind`` (e.g. "int | None")."""
    if value is None:
        return "None" in kind
    if isinstance(value, bool):  # before int: a bool is an int to Python
        return "bool" in kind
    if isinstance(value, int):
        return "int" in kind or "float" in kind
    if isinstance(value, float):
        return "float" in kind
    return "str" in kind


def settings(items: list[str], reserved: tuple[str, ...] = ()) -> dict:
    """``--set key=value`` items as TrainConfig keyword arguments, each checked against the field's type."""
    from dataclasses import fields

    from toolkit.errors import ConfigError

    types = {f.name: str(f.type) for f in fields(TrainConfig) if f.name not in reserved}
    out = {}
    for item in items:
        key, _, text = item.partition("=")
        if key not in types or not text:
            raise ConfigError(f"--set {item}: use key=value with a training setting: {', '.join(sorted(types))}")
        value, kind = parse_setting(text), types[key]
        if not _fits(value, kind):
            raise ConfigError(f"--set {item}: {key} takes {kind}, not {text!r}")
        out[key] = float(value) if kind.startswith("float") and isinstance(value, int) else value
    return out
