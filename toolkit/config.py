"""Frozen, flat, typed configuration: one dataclass per stage, each field commented.

Every config is saved as ``dataclasses.asdict(cfg)`` (checkpoints, manifests), so fields hold only
JSON types: int, float, bool, str.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields

# ---------------------------------------------------------------------------------------------
# Settings: each config field declares its role once, in its metadata (``setting``).  The command
# line options, the run id, the report's group labels and the ``--set`` keys are derived from it.
# ---------------------------------------------------------------------------------------------

# what a setting is to a run
EXPERIMENT = "experiment"  # names the run (its id) and its report group; labels the group when it varies
REPLICATE = "replicate"  # names the run, not its group: runs that differ only in it are one group (seed)
DATA = "data"  # names the run; a report holds the runs of one dataset, so it labels nothing
RUNTIME = "runtime"  # how and where the run computes (device, compile): never names a run or a group
ROLES = (EXPERIMENT, REPLICATE, DATA, RUNTIME)
BUILD = "build"  # a prep setting that changes the dataset written (its build, toolkit/identity.py)

# the help panels of the command line, in the order they are shown
INPUT, MODEL, SKIPS, LOSS, TRAINING, RUNTIME_PANEL, OUTPUT = (
    "Input", "Model", "Skips", "Loss", "Training", "Runtime", "Output")
SESSIONS_PANEL, FILTERS_PANEL, SPLIT_PANEL = "Sessions and skips", "Filters", "Split"  # toolkit prep's own
PANELS = (INPUT, SESSIONS_PANEL, FILTERS_PANEL, SPLIT_PANEL, MODEL, SKIPS, LOSS, TRAINING, RUNTIME_PANEL, OUTPUT)

# the input presets of toolkit prep (toolkit/readers.py reads each; docs/formats.md)
FORMATS = ("auto", "generic", "spotify", "spotify-extended", "mssd", "lastfm", "lastfm-csv", "listenbrainz", "deezer",
           "piki", "yambda", "sequences")

# which runs an experiment setting labels in a report (it does nothing for the others, e.g. alpha
# without the contrastive term); the report lists the labels in this order, then in field order
LABELS_WHEN = {
    "repeat-or-neural": lambda cfg: cfg.model in NEURAL or cfg.model == "repeat",
    "neural": lambda cfg: cfg.model in NEURAL,
    "contrastive": lambda cfg: cfg.model in NEURAL and "contrastive" in cfg.modes,
    "negative-target": lambda cfg: cfg.model in NEURAL and "negative-target" in cfg.modes,
    "bert4rec": lambda cfg: cfg.model == "bert4rec",
}
_UNSET = object()
MASK_PROB = 0.2  # bert4rec's share of hidden plays: ModelConfig's and TrainConfig's default alike


def setting(default, *, role: str, help: str | None = None, panel: str | None = None, flag: bool = False,
            choices: tuple[str, ...] = (), labels: str | None = "neural", earlier=_UNSET, hashed_as=_UNSET,
            metavar: str | None = None, names: tuple[str, ...] = ()):
    """A config field that declares its role once.

    ``role``: one of ROLES (a PrepConfig field: BUILD, DATA or RUNTIME).  ``help`` and ``panel``: its
    command-line help and help panel; ``flag``: an option of its own on the command line (the others are
    set with ``--set key=value``); ``choices``: its closed set of values.  ``labels``: the LABELS_WHEN key
    of the runs an experiment setting labels in a report (None: never, e.g. model and feedback, which name
    the group themselves).  ``earlier``: for a setting added after the first release, the value that
    reproduces the behaviour from before it; at that value it stays out of the run id, so adding it renamed
    no finished run.  ``hashed_as``: for a runtime knob of the first release, the value the run id hashes
    whatever it is set to, which keeps the ids of runs trained at the default (the others are found by
    ``identities_before``).  ``names``: the option's own spellings where they are not ``--field-name``
    (e.g. ``("--format", "-f")``).
    """
    if role not in ROLES + (BUILD,):
        raise ValueError(f"setting role {role!r}: use one of {ROLES + (BUILD,)}")
    if flag and not (help and panel):
        raise ValueError("a setting with a command-line flag needs its help text and panel")
    meta = {"role": role, "help": help, "panel": panel, "flag": flag, "choices": tuple(choices),
            "labels": labels if role == EXPERIMENT else None, "metavar": metavar, "names": tuple(names)}
    if earlier is not _UNSET:
        meta["earlier"] = earlier
    if hashed_as is not _UNSET:
        meta["hashed_as"] = hashed_as
    return field(default=default, metadata=meta)


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
    mask_prob: float = MASK_PROB  # cloze masking probability, used only when causal is False
    repeat_head: bool = False  # add a learned score to tracks already played in the row (causal models)
    # repeat head: also score the last ``successors`` tracks that followed the current track in the
    # listener's earlier plays (the batch's ``succ``; needs repeat_head); 0: off
    successors: int = 0
    # repeat head: also score the ``transitions`` tracks that most often followed the current track in
    # the train rows, by how often the other listeners played them there (a learned first-order Markov
    # term; the model's ``trans_*`` buffers; SeqRec.transition_weights); 0: off
    transitions: int = 0
    # repeat head: weigh each successor also by how the current play followed the previous play's
    # successors (SeqRec.follow_codes: a listener replaying an album in order keeps doing so)
    follow: bool = False
    # repeat head: every entry of the successor list adds its rank's weight (a track that followed
    # often and lately sums them); False: only a track's latest entry counts, by rank and count
    successor_sum: bool = False
    # repeat head: a learned share of the network's own track score is taken off each successor, so
    # that the head's weights alone can order them (SeqRec.successor_weights)
    successor_mute: bool = False
    # repeat head: also score the ``window`` plays after each earlier successor (the batch's ``succ``
    # holds them after the successors, ``history.play_successors``; SeqRec.window_weights); 0: off
    window: int = 0
    # repeat head: start its weights where the repeat baseline ranks (SeqRec._start_as_rule), not at zero
    rule_start: bool = False
    # repeat head: a learned weight per place in the repeat rule's order of its candidates (SeqRec.copy_terms)
    rule_rank: bool = False
    # the track embedding table keeps its random start (SeqRec.__init__)
    freeze_items: bool = False
    # leading columns of a full row that hold the listener's plays before the session (toolkit/history.py):
    # the last max_len - history columns are the session; a narrower row is all session
    history: int = 0
    # artists in the catalogue (0: off): each track's embedding is its own plus its artist's (the
    # encoder's ``item_artist`` buffer maps tracks to artists 1..artists, 0 for none), so a track with a
    # handful of plays, or none, is placed by what its artist's other tracks learned
    artists: int = 0
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
        if self.follow and not self.successors:
            raise ValueError("ModelConfig.follow weighs the successors: set successors > 0 too")
        if self.window < 0 or (self.window and not self.successors):
            raise ValueError(f"ModelConfig.window must be >= 0 and needs successors > 0, got {self.window}")
        if self.rule_start and not self.repeat_head:
            raise ValueError("ModelConfig.rule_start sets the repeat head's start: set repeat_head too")
        if self.rule_rank and not self.repeat_head:
            raise ValueError("ModelConfig.rule_rank weighs the repeat head's candidates: set repeat_head too")
        if self.artists < 0:
            raise ValueError(f"ModelConfig.artists must be >= 0, got {self.artists}")
        if not (_finite(self.init_std) and self.init_std > 0):
            raise ValueError(f"ModelConfig.init_std must be a finite number > 0, got {self.init_std}")


# ---------------------------------------------------------------------------------------------
# PrepConfig: raw listening logs -> a prepared dataset (toolkit/prep.py). Saved in manifest.json.
# ---------------------------------------------------------------------------------------------


# how prep cuts sessions into train / valid / test (toolkit/splits.py); see PrepConfig.split
SPLIT_MODES = ("auto", "time", "listener", "last")


@dataclass(frozen=True)
class PrepConfig:
    # roles: BUILD settings shape the dataset written (its build, toolkit/identity.py); the format read is
    # recorded in the build on its own, and name, memory and threads only say where and how it is written
    # input preset: FORMATS (auto, generic, spotify, ..., listenbrainz, deezer; docs/formats.md)
    format: str = setting("auto", role=DATA, flag=True, panel=INPUT, choices=FORMATS, names=("--format", "-f"),
                          help="Input format; auto recognises each of the others (docs/formats.md).")
    # generic format: "role=column" pairs (roles: user ts track played_ms duration_ms skipped session artist title)
    cols: tuple[str, ...] = setting((), role=BUILD, flag=True, panel=INPUT, names=("--col",), metavar="ROLE=COLUMN",
                                    help="Generic format: role=column (roles: user ts track played_ms duration_ms skipped session artist title).")
    user: str | None = setting(None, role=BUILD, flag=True, panel=INPUT,
                               help="User id for every play (one listener's export).")
    name: str | None = setting(None, role=DATA, flag=True, panel=OUTPUT,
                               help="Dataset name (default: from the input path).")
    session_gap_s: int = setting(1800, role=BUILD, flag=True, panel=SESSIONS_PANEL, names=("--session-gap",),
                                 help="Seconds of pause that start a new session (strictly longer).")
    skip_ms: int = setting(30_000, role=BUILD, flag=True, panel=SESSIONS_PANEL,
                           help="A play shorter than this many ms is a skip (no explicit flag).")
    # when track length is known: played / length below this is a skip
    skip_ratio: float | None = setting(None, role=BUILD, flag=True, panel=SESSIONS_PANEL,
                                       help="With track lengths: played/length below this is a skip.")
    collapse_repeats: bool = setting(False, role=BUILD, flag=True, panel=FILTERS_PANEL,
                                     names=("--collapse-repeats/--no-collapse-repeats",),
                                     help="Drop a play of the same track as the play right before it.")
    min_session_len: int = setting(2, role=BUILD, flag=True, panel=FILTERS_PANEL, help="Drop sessions with fewer plays.")
    min_item_plays: int = setting(1, role=BUILD, flag=True, panel=FILTERS_PANEL,
                                  help="Drop tracks with fewer plays in the whole log.")
    keep_podcasts: bool = setting(False, role=BUILD, flag=True, panel=FILTERS_PANEL,
                                  names=("--keep-podcasts/--no-keep-podcasts",),
                                  help="Keep podcast / audiobook rows (extended history).")
    # plays longer than this are dropped as overlong (None: keep all)
    max_play_ms: int | None = setting(None, role=BUILD, flag=True, panel=FILTERS_PANEL,
                                      help="Drop plays longer than this (e.g. podcasts).")
    # 'time': all sessions cut at the same instants into train/valid/test; 'listener': each listener's own
    # last sessions are valid/test; 'last': leave-last-out (leaky); 'auto': listener when a global cut would
    # test listeners without training plays (toolkit/splits.py), else time; last for formats without time
    split: str = setting("auto", role=BUILD, flag=True, panel=SPLIT_PANEL, choices=SPLIT_MODES,
                         help="time: every session cut at the same instants; listener: each listener's own last "
                              "sessions are valid/test; last: leave-last-out (leaky); auto: listener when a global cut "
                              "would test listeners without training plays, else time (last for the sequences format, "
                              "which has no time).")
    valid_frac: float = setting(0.1, role=BUILD, flag=True, panel=SPLIT_PANEL, help="Share of sessions for validation.")
    test_frac: float = setting(0.1, role=BUILD, flag=True, panel=SPLIT_PANEL, help="Share of sessions for test.")
    # width of the sequence arrays (the paper uses 20); longer sessions are cut into windows
    max_len: int = setting(20, role=BUILD, flag=True, panel=SPLIT_PANEL,
                           help="Width of the sequence arrays; longer sessions become several windows.")
    min_ts: str = setting("1990-01-01", role=BUILD)  # plays before this date are impossible and dropped
    memory_limit: str = setting("1GB", role=RUNTIME, flag=True, panel=RUNTIME_PANEL,
                                help="DuckDB memory limit (spills to disk past it).")
    threads: int = setting(0, role=RUNTIME)  # DuckDB threads (0: all cores)
    # memory for prep's own arrays (DuckDB's memory_limit comes on top): a log too large for it is
    # processed in buckets of listeners, one at a time; the dataset written is the same either way
    memory: str = setting("1.5GB", role=RUNTIME, flag=True, panel=RUNTIME_PANEL,
                          help="Memory for prep's own arrays; a larger log is prepared in buckets of listeners (same result).")

    def __post_init__(self) -> None:
        object.__setattr__(self, "cols", tuple(self.cols))  # the command line hands over a list
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
    # every field declares its role once (``setting``): the CLI options, the run id, the report's
    # group labels and the --set keys are all derived from these declarations
    # None: the most recently prepared one
    dataset: str | None = setting(None, role=DATA, flag=True, panel=INPUT,
                                  help="Prepared dataset (default: the latest).")
    # sasrec (causal), bert4rec (masked), gru4rec (recurrent); count baselines: pop (most popular), markov
    # (item-to-item), sknn (V-SKNN session neighbours), repeat (the session's own plays, then markov)
    model: str = setting("sasrec", role=EXPERIMENT, labels=None, flag=True, panel=MODEL, choices=MODELS,
                         help="sasrec, bert4rec, gru4rec (recurrent), pop (most popular), markov (transitions), sknn "
                              "(session neighbours) or repeat (the session's own plays first).")
    # '+'-joined modes: all, positives-only, contrastive, feedback-input, negative-target
    feedback: str = setting("all", role=EXPERIMENT, labels=None, flag=True, panel=SKIPS, metavar="MODE[+MODE]",
                            help=f"What the model learns from skips: {', '.join(FEEDBACK_MODES)}; combine with '+'.")
    # causal target: next-item (every play), next-pos (next non-skipped play, further on when the next is
    # skipped) or next-kept (the next play only where it was kept: no position is trained towards a skip)
    target: str = setting("next-item", role=EXPERIMENT, flag=True, panel=LOSS, choices=TARGETS,
                          help="Causal target: next-item, next-pos (next non-skipped play) or next-kept (the next "
                               "play where it was kept).")
    # next-item loss: ce (full softmax), sampled (sampled softmax, logQ, negatives per row), shared (sampled
    # softmax, logQ, one set of negatives per step shared by every position), bce, auto (ce, else sampled)
    loss: str = setting("auto", role=EXPERIMENT, flag=True, panel=LOSS, choices=LOSSES,
                        help="ce (full softmax), sampled (per-row negatives, logQ-corrected), shared (negatives shared "
                             "by the batch, logQ-corrected), bce, or auto.")
    # sampled / bce: negatives per row (the numba kernel); shared: per step (torch)
    negatives: int = setting(512, role=EXPERIMENT, flag=True, panel=LOSS, help="Sampled negatives per row.")
    # ce: MiB of float32 catalogue scores one step may hold; past it the full softmax is computed in
    # catalogue chunks (toolkit/full_softmax.py: the same loss, scores recomputed in backward). 512 is
    # twice the scores at which auto stops choosing ce, so every auto run trained with ce stays plain.
    # Part of the identity, not a runtime knob: chunks sum float32 scores in another order
    loss_memory_mb: float = setting(512.0, role=EXPERIMENT, earlier=512.0, panel=LOSS,
                                    help="MiB of catalogue scores one full-softmax step may hold (chunked past it).")
    # popularity by default: on Spotify (166k tracks) uniform negatives were too easy (validation
    # NDCG@10 0.006 after 2 epochs) while popularity^0.75 with logQ reached 0.041 in 6
    sampler: str = setting("popularity", role=EXPERIMENT, flag=True, panel=LOSS, choices=SAMPLERS,
                           help="Negative sampler: popularity (logQ-corrected) or uniform.")
    sampler_beta: float = setting(0.75, role=EXPERIMENT, panel=LOSS,
                                  help="Exponent of the popularity sampler (0: uniform).")
    # contrastive defaults chosen on validation data (synthetic and Spotify, see docs/cli.md): alpha 0.5 with
    # the output context lowered NDCG@10 several-fold; alpha 0.1 with the input embedding e_t helped
    # (the next-item term has weight 1)
    alpha: float = setting(0.1, role=EXPERIMENT, labels="contrastive", flag=True, panel=SKIPS,
                           help="Contrastive: weight of the skip InfoNCE term.")
    tau: float = setting(0.1, role=EXPERIMENT, labels="contrastive", flag=True, panel=SKIPS,
                         help="Contrastive: temperature.")  # of cos(x, c) / tau
    # contrastive context: input (embedding e_t of the play) or output (model output y_i), both compared by
    # cos / tau as in the paper; score: y_i by dot product, the ranking's own scores (tau unused)
    context: str = setting("input", role=EXPERIMENT, labels="contrastive", flag=True, panel=SKIPS, choices=CONTEXTS,
                           help="Contrastive context: input (e_t, the play's embedding) or output (y_i), by cos/tau; "
                                "score (y_i by dot product: the ranking's own scores).")
    # contrastive negatives: session (every skipped play of the session, as in the paper) or seen (only
    # the skips up to the query's position: the ones the model has read)
    skip_negatives: str = setting("session", role=EXPERIMENT, labels="contrastive", earlier="session", flag=True,
                                  panel=SKIPS, choices=SKIP_NEGATIVES,
                                  help="Contrastive negatives: session (every skipped play of the session, as in the "
                                       "paper) or seen (only skips up to the query's position).")
    # negative-target: weight of the unlikelihood term on skipped next tracks
    neg_weight: float = setting(0.5, role=EXPERIMENT, labels="negative-target", flag=True, panel=SKIPS,
                                help="Negative-target: weight of the unlikelihood term.")
    d_model: int = setting(64, role=EXPERIMENT, flag=True, panel=MODEL, help="Model width.")
    n_layers: int = setting(2, role=EXPERIMENT, flag=True, panel=MODEL, help="Transformer blocks.")
    n_heads: int = setting(2, role=EXPERIMENT, flag=True, panel=MODEL, help="Attention heads.")
    dropout: float = setting(0.2, role=EXPERIMENT, flag=True, panel=MODEL, help="Dropout.")
    mask_prob: float = setting(MASK_PROB, role=EXPERIMENT, labels="bert4rec", panel=MODEL,
                               help="BERT4Rec: share of plays hidden in training.")
    epochs: int = setting(10, role=EXPERIMENT, flag=True, panel=TRAINING, help="Epochs.")  # passes over the train rows
    batch_size: int = setting(128, role=EXPERIMENT, flag=True, panel=TRAINING, help="Rows per step.")
    lr: float = setting(1e-3, role=EXPERIMENT, flag=True, panel=TRAINING, help="Peak learning rate (AdamW).")
    weight_decay: float = setting(0.0, role=EXPERIMENT, panel=TRAINING, help="AdamW weight decay.")
    warmup_steps: int = setting(100, role=EXPERIMENT, panel=TRAINING,
                                help="Linear warm-up steps, then the schedule.")
    lr_schedule: str = setting("constant", role=EXPERIMENT, earlier="constant", flag=True, panel=TRAINING,
                               choices=LR_SCHEDULES,
                               help="After warm-up: constant, or cosine (decays to 0 at the last planned step).")
    grad_clip: float = setting(5.0, role=EXPERIMENT, panel=TRAINING, help="Largest gradient norm.")
    # stop after this many epochs without a better validation NDCG@10
    patience: int = setting(3, role=EXPERIMENT, flag=True, panel=TRAINING,
                            help="Early stopping patience in epochs (validation NDCG@10).")
    max_steps: int | None = setting(None, role=EXPERIMENT, flag=True, panel=TRAINING,
                                    help="Stop after this many steps (smoke tests).")  # optimiser steps
    valid_sessions: int = setting(0, role=EXPERIMENT, flag=True, panel=TRAINING,
                                  help="Validate on this many sessions drawn with the seed (0: all); still full "
                                       "ranking.")
    # a learned score for tracks already played in the row, by how far back and in what context (causal
    # models; listeners replay tracks, and the dot product with track embeddings learns that slowly).
    # None: on wherever it applies (sasrec and gru4rec without negative-target, with --loss auto, ce or
    # shared; auto then takes the shared softmax where the full one does not fit), the setting the study
    # chose on validation (benchmarks/README.md, "the listener's past"); resolved when the config is made
    repeat_head: bool | None = setting(None, role=EXPERIMENT, earlier=False, panel=MODEL,
                                       help="A learned score for tracks already played in the row (None: where it "
                                            "applies).")
    # the evaluation protocol of validation (``validation``), recorded in the run so that the report
    # applies it too: ranking without the tracks already played in the session is the published ML-1M
    # protocol (a user rates a film once); music is re-played, so the default keeps them
    exclude_played: bool = setting(False, role=EXPERIMENT, earlier=False, flag=True, panel=TRAINING,
                                   help="Validate without the tracks already played in the session (the ML-1M "
                                        "protocol); the report applies it too.")
    seed: int = setting(0, role=REPLICATE, flag=True, panel=TRAINING,
                        help="Seed for numpy, the numba samplers and torch.")
    # runtime knobs of the first release: hashed into the run id at their default (``identity``)
    device: str = setting("auto", role=RUNTIME, hashed_as="auto", flag=True, panel=RUNTIME_PANEL, choices=DEVICES,
                          help="auto takes a CUDA GPU when there is one.")
    # bfloat16 autocast for the training forward pass and losses (validation stays float32). Part of the
    # identity, not a runtime knob: bfloat16 changes the losses and so the weights a run ends with
    amp: bool = setting(False, role=EXPERIMENT, earlier=False, flag=True, panel=RUNTIME_PANEL,
                        help="Mixed precision: bfloat16 autocast in training (for GPUs; validation stays float32).")
    compile: bool = setting(False, role=RUNTIME, hashed_as=False, flag=True, panel=RUNTIME_PANEL,
                            help="torch.compile the model (slow first steps; pays off on long GPU runs).")
    # where per-row negatives (sampled, bce) are drawn: auto (on the GPU when training on one, else the
    # numba kernel on the host), host (the numba kernel) or device (torch on the training device, CPU too);
    # the same distribution either way (toolkit/sampling.py), so it is a runtime knob, not part of the run id
    negatives_on: str = setting("auto", role=RUNTIME, panel=RUNTIME_PANEL, choices=NEGATIVES_ON,
                                help="Where per-row negatives are drawn: auto, host or device.")
    # the listener's last plays before the session, read as context by every query of the session
    # (0: the session alone); the repeat baseline reads them too (toolkit/history.py)
    history: int = setting(0, role=EXPERIMENT, labels="repeat-or-neural", earlier=0, panel=MODEL,
                           help="The listener's plays before the session read as context (0: none).")
    # with the repeat head, also score the last N tracks that followed the current track in the listener's
    # earlier plays (albums and playlists come back in their order); the repeat baseline ranks them first.
    # None: DEFAULT_SUCCESSORS for the repeat head and the repeat baseline, else 0
    successors: int | None = setting(None, role=EXPERIMENT, labels="repeat-or-neural", earlier=0, panel=MODEL,
                                     help="Earlier successors of the current track the repeat head reads.")
    # with the repeat head, also score the N tracks that most often followed the current track in the
    # train rows of the other listeners, with a learned weight on how often (a first-order transition
    # count inside the model; SeqRec.transition_weights)
    transitions: int = setting(0, role=EXPERIMENT, earlier=0, panel=MODEL,
                               help="Most frequent train successors of the current track the repeat head reads.")
    # with successors, weigh each one also by whether the current play was itself one of the previous
    # play's successors, and which (SeqRec.follow_codes)
    follow: bool = setting(False, role=EXPERIMENT, earlier=False, panel=MODEL,
                           help="Weigh successors by how the current play followed the previous play's successors.")
    # every entry of the successor list adds its rank's weight, as the repeat baseline sums them;
    # False: a track's latest entry only, by its rank and how often the track is in the list
    successor_sum: bool = setting(False, role=EXPERIMENT, earlier=False, panel=MODEL,
                                  help="Sum the rank weights of every entry of a successor (else the latest entry only).")
    # a learned share of the network's own track score is taken off the successors, so that the repeat
    # head's weights can order them alone where the network's scores only add noise
    successor_mute: bool = setting(False, role=EXPERIMENT, earlier=False, panel=MODEL,
                                   help="Let the repeat head take a learned share of the track score off the successors.")
    # with successors, also score the N plays that came after each earlier successor of the current
    # track (the rest of the album or playlist around it last times; SeqRec.window_weights; the repeat
    # baseline ranks them below the replays, RepeatScorer)
    window: int = setting(0, role=EXPERIMENT, labels="repeat-or-neural", earlier=0, panel=MODEL,
                          help="Plays after each earlier successor that the repeat head also reads (0: none).")
    # the repeat head starts ranking as the repeat baseline does (SeqRec._start_as_rule), not at zero
    rule_start: bool = setting(False, role=EXPERIMENT, earlier=False, panel=MODEL,
                               help="Start the repeat head's weights where the repeat baseline ranks.")
    # a learned weight per place in the repeat baseline's order of the head's candidates, started so
    # that the network ranks as the rule does to the place (SeqRec.copy_terms)
    rule_rank: bool = setting(False, role=EXPERIMENT, earlier=False, panel=MODEL,
                              help="Add a learned weight per place in the repeat baseline's order to the repeat head.")
    # the track embeddings keep their random start: on personal logs, trained ones memorise the train
    # sessions track by track, and the network trusts them more than later sessions bear out
    freeze_items: bool = setting(False, role=EXPERIMENT, earlier=False, panel=MODEL,
                                 help="Keep the track embeddings at their random start (do not train them).")
    # each track's embedding is its own plus one per artist (the dataset's items table), so rare and
    # new tracks share what their artist's other tracks learned; the count baselines have no such input
    artists: bool = setting(False, role=EXPERIMENT, earlier=False, panel=MODEL,
                            help="Add an embedding per artist to every track's embedding.")

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(sorted(self.feedback.split("+")))

    @property
    def frozen_skip_term(self) -> bool:
        """Whether the contrastive term would compare frozen vectors only: with ``freeze_items`` and the
        play embeddings e_t as its context (no artist vectors added to them), neither side of its cosine
        has a parameter, so the term's gradient is zero and the run trains exactly as the skip-blind one."""
        return frozen_skip_term(self.feedback, self.freeze_items, self.context, self.artists)

    @property
    def validation(self) -> Evaluation:
        """The protocol validation ranks with; recorded with the run, so the report applies it too."""
        return Evaluation(split="valid", positions="all", exclude_played=self.exclude_played)

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
        for name in SUCCESSOR_OPTIONS:
            if getattr(self, name) and not (self.repeat_head and self.successors):
                problems.append(f"{name} weighs the repeat head's successors: set successors above 0 (with repeat_head), "
                                f"or leave {name} off")
        if self.window < 0:
            problems.append(f"window={self.window}: use 0 (off) or how many plays after each earlier successor to read")
        elif self.window and not ((self.repeat_head or self.model == "repeat") and self.successors):
            problems.append("window reads on after the successors: set successors above 0 (with repeat_head, or "
                            "--model repeat), or leave window at 0")
        if self.rule_start and not self.repeat_head:
            problems.append("rule_start sets where the repeat head starts: set repeat_head=true too, or leave it off")
        if self.rule_rank and not self.repeat_head:
            problems.append("rule_rank weighs the repeat head's candidates: set repeat_head=true too, or leave it off")
        if self.frozen_skip_term:
            problems.append("freeze_items keeps the track vectors at their start, and the contrastive term with "
                            "--context input compares only those, so it would train nothing: use --context output "
                            "(not with positives-only, whose model never reads the skips), or leave freeze_items off")
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


@dataclass(frozen=True)
class Evaluation:
    """The evaluation protocol: which queries of which split are ranked, and against what.  Validation
    in training ranks by ``TrainConfig.validation``, the report by ``report.Protocol.evaluation``; a
    run records its own (config.json), and the report applies it unless told otherwise."""

    split: str = "test"  # SCORED_SPLITS
    positions: str = "all"  # POSITIONS
    exclude_played: bool = False  # tracks already played in the session are left out of the ranking

    def __post_init__(self) -> None:
        from toolkit.errors import ConfigError

        if self.split not in SCORED_SPLITS:
            raise ConfigError(f"--split {self.split}: choose {' or '.join(SCORED_SPLITS)}")
        if self.positions not in POSITIONS:
            raise ConfigError(f"--positions {self.positions}: choose {' or '.join(POSITIONS)}")


# the TrainConfig settings that are the run's evaluation protocol: every run a report compares, count
# baselines included, must share them (``report.Protocol.for_runs``)
PROTOCOL_SETTINGS = frozenset(f.name for f in fields(Evaluation)) & frozenset(f.name for f in fields(TrainConfig))

NAME_MAX = 100  # longest dataset name (it names a folder)


def _either(values: tuple[str, ...], quote: bool = False) -> str:
    """'a, b or c' (quoted with ``quote``): the choices an error message offers."""
    shown = [repr(v) if quote else v for v in values]
    return ", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else "".join(shown)
SEED_MAX = 2**32 - 1  # numpy's seed range

# TrainConfig fields with a flag of their own on `toolkit train`; the others are set with --set key=value
TRAIN_FLAGS = frozenset(f.name for f in fields(TrainConfig) if f.metadata["flag"])

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


# what the repeat head and the repeat baseline read by default (the study's choice on validation: 10
# successors doubled both on the Spotify logs, 5 did almost as well; benchmarks/README.md)
DEFAULT_SUCCESSORS = 10
# the settings that change how the repeat head weighs the successors: each needs successors to read
SUCCESSOR_OPTIONS = ("follow", "successor_sum", "successor_mute")


def frozen_skip_term(feedback: str, freeze_items: bool, context: str, artists: bool) -> bool:
    """``TrainConfig.frozen_skip_term`` from the settings alone (the study asks before it builds a run)."""
    return bool(freeze_items) and "contrastive" in feedback.split("+") and context == "input" and not artists


# every setting of the repeat head, off: what a run without "before" to read gets (bert4rec, and the
# negative-target mode, whose unlikelihood term has no copy candidates), in the study and in tune alike
NO_REPEAT_HEAD = {"repeat_head": False, "successors": 0, "transitions": 0, "window": 0, "rule_start": False,
                  "rule_rank": False,
                  **dict.fromkeys(SUCCESSOR_OPTIONS, False)}


def saved_config(saved: dict) -> TrainConfig:
    """A run's recorded ``train`` settings as its TrainConfig.  A setting since removed from the toolkit
    is ignored; one added since the run was recorded takes its ``earlier`` value, the behaviour the run
    was trained with (not today's default, which may have changed since: the repeat baseline's
    successors did)."""
    known = {f.name: f for f in fields(TrainConfig)}
    given = {k: v for k, v in saved.items() if k in known}
    for name, f in known.items():
        if name not in given and "earlier" in f.metadata:
            given[name] = f.metadata["earlier"]
    return TrainConfig(**given)


def roles(cls=None) -> dict[str, str]:
    """Each field of a config class (TrainConfig by default) and the role it declares."""
    return {f.name: f.metadata["role"] for f in fields(cls or TrainConfig)}


# Settings added after the first release, with the value that reproduces the behaviour from before
# they existed (their ``earlier``).  At that value a setting stays out of a run's identity, so adding a
# setting never renames, and so never retrains, a finished run.
LATER_SETTINGS: dict[str, object] = {f.name: f.metadata["earlier"] for f in fields(TrainConfig)
                                     if "earlier" in f.metadata}
# Settings that change how a run is computed, never what it learns from or how: never part of its identity,
# so the same run may be continued with another value (device, compile, negatives_on)
RUNTIME_SETTINGS = frozenset(name for name, role in roles().items() if role == RUNTIME)
# settings that never separate two runs into two report groups: runs that differ only in them are seeds
# (or the same experiment computed elsewhere) of one group
NOT_GROUPING = frozenset(name for name, role in roles().items() if role != EXPERIMENT)


def identity(cfg: TrainConfig) -> dict:
    """The settings that name a run: every field, less later ones left at their earlier behaviour and
    the runtime knobs.  The runtime knobs of the first release (device, compile) were part of the id
    then, so they stay in it at one value (their ``hashed_as``): ``--device cpu`` and ``--device auto``
    are one run, and every run trained at the default keeps its id."""
    out = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata["role"] == RUNTIME:
            if "hashed_as" in f.metadata:
                out[f.name] = f.metadata["hashed_as"]
        elif not ("earlier" in f.metadata and value == f.metadata["earlier"]):
            out[f.name] = value
    return out


def identities_before(cfg: TrainConfig) -> list[dict]:
    """The identities ``cfg`` may have had while the runtime knobs of the first release were part of
    a run's id as set (``--device cpu`` named another run than ``auto``): one per combination of their
    values, the current identity excluded.  A run trained back then is found under one of them."""
    import itertools

    knobs = [f for f in fields(cfg) if "hashed_as" in f.metadata]
    values = [f.metadata["choices"] or (False, True) for f in knobs]
    now = identity(cfg)
    out = []
    for combo in itertools.product(*values):
        old = {**now, **{f.name: v for f, v in zip(knobs, combo)}}
        if old != now:
            out.append(old)
    return out


def group_labels(cfg: TrainConfig) -> list[str]:
    """The experiment settings that can tell this run's report group from another of the same model
    (e.g. alpha only with the contrastive term), in the report's order: by LABELS_WHEN, then field order."""
    order = list(LABELS_WHEN)
    chosen = [f for f in fields(cfg) if f.metadata["labels"] is not None and LABELS_WHEN[f.metadata["labels"]](cfg)]
    return [f.name for f in sorted(chosen, key=lambda f: order.index(f.metadata["labels"]))]


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
