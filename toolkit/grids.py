"""The study's grids of runs: which (model, feedback, settings) cells ``toolkit study --grid`` trains.

Pure data with no heavy import, so the command line can offer the grids as choices and describe them
in its help without loading torch; ``toolkit/study.py`` trains them.
"""

from __future__ import annotations

# the repeat baseline and the neural models' repeat head read the last this many tracks that followed
# the current track in the listener's earlier plays (see toolkit/study.py SMALL for how it was chosen)
SUCCESSORS = 10
DEFAULT_GRID = "core"  # what `toolkit study` trains without --grid
# the count baselines practitioners use: most popular, first-order transitions, session neighbours
# (V-SKNN), the session's own plays first, and that with the listener's earlier successors of the
# current track above everything (the same information the neural models read); the neural models
# are measured against the best of them on validation
COUNTING = [("pop", "all", {}), ("markov", "all", {}), ("sknn", "all", {}), ("repeat", "all", {"successors": 0}),
            ("repeat", "all", {"successors": SUCCESSORS})]
GRIDS: dict[str, list[tuple[str, str, dict]]] = {
    # the default: both baselines, SASRec blind to skips, without skips, with the skip term, and with the
    # skip term on a model that never reads or predicts a skip
    "core": [*COUNTING, ("sasrec", "all", {}), ("sasrec", "positives-only", {}),
             ("sasrec", "contrastive", {}), ("sasrec", "positives-only+contrastive", {})],
    # the paper's grid: {SASRec, BERT4Rec} x {all, contrastive with context y_i, with context e_t}
    "paper": [("pop", "all", {}), ("markov", "all", {}), ("sasrec", "all", {}), ("sasrec", "positives-only", {}),
              ("sasrec", "contrastive", {"context": "output"}), ("sasrec", "contrastive", {"context": "input"}),
              ("bert4rec", "all", {}), ("bert4rec", "contrastive", {"context": "output"}),
              ("bert4rec", "contrastive", {"context": "input"})],
}
# core plus the two variants that act on the skipped next track directly (alone and with the skip term)
GRIDS["skip"] = GRIDS["core"] + [("sasrec", "negative-target", {}), ("sasrec", "contrastive+negative-target", {})]
GRIDS["full"] = GRIDS["paper"] + [
    ("sasrec", "feedback-input", {}), ("sasrec", "negative-target", {}), ("sasrec", "feedback-input+contrastive", {}),
    ("sasrec", "contrastive", {"target": "next-pos"}), ("sasrec", "all", {"target": "next-pos"}),
    ("sasrec", "feedback-input+negative-target", {}), ("bert4rec", "positives-only", {}),
    ("bert4rec", "feedback-input", {}), ("gru4rec", "all", {}), ("gru4rec", "positives-only", {}),
    ("gru4rec", "contrastive", {}),
]


def cell_name(model: str, feedback: str, extra: dict) -> str:
    """A cell named as the report names its group: 'sasrec / contrastive (context=output)'."""
    options = f" ({', '.join(f'{k}={v}' for k, v in extra.items())})" if extra else ""
    return f"{model} / {feedback}{options}"
