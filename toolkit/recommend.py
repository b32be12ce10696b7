"""``toolkit recommend``: the top-k next tracks for session prefixes, from a run's best checkpoint.

Input: a parquet file with one row per play of each prefix: ``session`` (any id), and the track as
``track_key`` (the dataset's track identity, see ``items.parquet``) or ``item_id``; optional
``skipped`` (bool) for models that read feedback, optional ``position`` to order the plays (else
file order), optional ``listener`` (a ``user_id`` of the dataset) whose earlier plays the session
follows, for runs that read them (``top_k``).  Output: one row per (session, rank) with the item
id, score, track key, artist and title.  Plays of tracks outside the catalogue cannot be encoded:
they are left out of the prefix and counted; a session left empty gets no recommendations and is
counted too.

In place of the file, one prefix can be named by artist and title (``--artist ... --title ...``,
matched case-insensitively; its plays count as listened to, not skipped).  The result carries a preview, "artist – title" per recommended
track: a track key of the form ``artist<US>title`` (the unit separator, as the readers build it
for logs without track ids) is split for display, never shown raw.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import polars as pl
import torch

from toolkit.artifacts import Workspace, atomic_path, read_frame, read_manifest
from toolkit.errors import EmptyInputError, InputError
from toolkit.history import ListenerOrder, prefix_context
from toolkit.runs import scorer_for, select_runs
from toolkit.schema import ITEM, SESSION, TRACK, TS, USER

MAX_K = 1000
PREVIEW_SESSIONS, PREVIEW_TRACKS = 3, 5  # what the command prints of the output file
SEP = "\x1f"  # the unit separator between artist and title in a track key built from names
NAMED = "named"  # the session id of a prefix given as --artist / --title


def recommend(ws: Workspace, run_id: str, sessions: Path | None, k: int, out: Path, device: str = "cpu",
              allow_unfinished: bool = False, named: list[tuple[str, str]] | None = None,
              listener: str | None = None) -> dict:
    """Write the top-``k`` tracks per session of ``sessions`` (or of the one prefix of ``named``
    (artist, title) plays) to ``out``; return the counts and a preview.  ``listener``: whose earlier
    plays the sessions follow (see ``top_k``)."""
    if (sessions is None) == (not named):
        raise InputError("pass either --sessions FILE or --artist NAME --title NAME (once per play)")
    if named:
        plays, shown = named_plays(ws, run_id, named, allow_unfinished), "the named plays"
    else:
        plays, shown = _read_parquet(sessions), str(sessions)
    recs, counts = top_k(ws, run_id, plays, k, device, allow_unfinished, shown, listener)
    with atomic_path(out) as tmp:
        recs.write_parquet(tmp)
    return {**counts, "out": str(out), "preview": preview(recs)}


def named_plays(ws: Workspace, run_id: str, named: list[tuple[str, str]], allow_unfinished: bool = False) -> pl.DataFrame:
    """One session prefix of the tracks named (artist, title), as the sessions file's columns."""
    dataset = select_runs(ws, [run_id], None, allow_unfinished)[0].config.dataset
    items = read_frame(ws.dataset(dataset).items, columns=[ITEM, TRACK, "artist", "title"])
    ids = [find_track(items, artist, title, dataset) for artist, title in named]
    return pl.DataFrame({"session": [NAMED] * len(ids), ITEM: ids, "skipped": [0] * len(ids)},
                        schema={"session": pl.String, ITEM: pl.Int32, "skipped": pl.Int8})


def top_k(ws: Workspace, run_id: str, plays: pl.DataFrame, k: int, device: str = "cpu",
          allow_unfinished: bool = False, shown: str = "the plays",
          listener: str | None = None) -> tuple[pl.DataFrame, dict]:
    """The top-``k`` tracks per session of ``plays`` (the sessions file's columns, see above) as a
    frame of ``session, rank, item_id, score, track_key, artist, title``; and the counts.

    A run that reads the listener's earlier plays (successors, history columns, the transition
    term: ``reads_the_past``) reads them here as for a test session of its dataset: each session
    follows all of its listener's plays in the dataset.  The listener is the session's ``listener``
    column, else ``listener``, else the dataset's only listener; with none, a session reads its own
    plays only (as a session of no known listener does in evaluation).  The counts then name the
    listeners read (``listeners``: name -> plays) and how many sessions had none.
    ``shown`` names the plays in messages (the file they came from)."""
    if not 1 <= k <= MAX_K:
        raise InputError(f"-k {k}: choose 1..{MAX_K}")
    run = select_runs(ws, [run_id], None, allow_unfinished)[0]
    ds = ws.dataset(run.config.dataset)
    manifest = read_manifest(ds)
    items = read_frame(ds.items, columns=[ITEM, TRACK, "artist", "title"])
    plays = _session_plays(plays, items, shown)
    known = plays.filter(pl.col(ITEM).is_not_null())
    cfg = run.config
    prefixes = _prefixes(known)
    arrays, past = _query_rows(ds, cfg, prefixes, manifest.max_len, listener, shown)
    keys = prefixes["session"].to_numpy()
    width = arrays["seqs"].shape[1]
    dev = torch.device(device)
    scorer = scorer_for(ws, run, dev)
    rows_out = []
    for lo in range(0, len(keys), 256):
        hi = min(lo + 256, len(keys))
        batch = {name: torch.from_numpy(v[lo:hi]).to(dev) for name, v in arrays.items()}
        rows = torch.arange(hi - lo, device=dev)
        cols = torch.full((hi - lo,), width - 1, device=dev)
        with torch.no_grad():
            scores = scorer.scores(batch, rows, cols).float()
        if run.config.validation.exclude_played:  # the protocol the run was chosen under: no replays
            scores.scatter_(1, batch["seqs"][:, cfg.history:], float("-inf"))  # PAD's column is -inf already
        top = torch.topk(scores, k=min(k, manifest.items), dim=1)
        rows_out.append(pl.DataFrame({
            "session": np.repeat(keys[lo:hi], top.indices.shape[1]),
            "rank": np.tile(np.arange(1, top.indices.shape[1] + 1, dtype=np.int32), hi - lo),
            ITEM: top.indices.cpu().numpy().astype(np.int32).ravel(),
            "score": top.values.cpu().numpy().ravel(),
        }, schema_overrides={"session": plays.schema["session"]}))
    recs = pl.concat(rows_out) if rows_out else pl.DataFrame(schema={"session": plays.schema["session"],
                                                                    "rank": pl.Int32, ITEM: pl.Int32,
                                                                    "score": pl.Float32})
    recs = recs.filter(pl.col("score") > float("-inf"))  # a tiny catalogue with every track played
    recs = recs.join(items, on=ITEM, how="left").sort("session", "rank", maintain_order=True)
    n_sessions = plays["session"].n_unique()
    return recs, {"run": run.id, "sessions": n_sessions, "recommended": len(keys),
                  "empty_sessions": n_sessions - len(keys), "plays": plays.height,
                  "unknown_plays": plays.height - known.height, "rows": recs.height, **past}


def reads_the_past(cfg) -> bool:
    """Whether a run's scores read the listener's plays before the session (``toolkit/history.py``):
    successors, history columns, or the transition term (which leaves the listener's own out)."""
    return bool(cfg.successors or cfg.history or cfg.transitions)


def _query_rows(ds, cfg, prefixes: pl.DataFrame, max_len: int, listener: str | None,
                shown: str) -> tuple[dict[str, np.ndarray], dict]:
    """The batch arrays of one query row per prefix, as evaluation reads a test session of the run's
    dataset: ``seqs``, ``fb`` (S, history + max_len) and, where the run reads them, ``succ`` (S, width, K (1 + window))
    and ``user`` (S,); and what the rows read of the listeners' past, for the counts."""
    S, H, K, W = prefixes.height, cfg.history, cfg.successors, cfg.window
    seqs = np.zeros((S, H + max_len), np.int64)
    fb = np.zeros((S, H + max_len), np.int64)
    succ = np.zeros((S, H + max_len, K * (1 + W)), np.int64)
    order = None
    if reads_the_past(cfg):
        order = ListenerOrder(read_frame(ds.events, columns=[SESSION, "position", USER, ITEM, TS, "is_skip"]))
        names = order.listener_names
        if listener is None and len(names) == 1:
            listener = names[0]  # one listener's export: the prefixes are that listener's
    users = np.full(S, order.n_blocks if order else 0, np.int64)  # no one's code: nothing of the past is left out
    given = prefixes["listener"].to_list() if "listener" in prefixes.columns else [None] * S
    used: dict[str, int] = {}
    for i, (its, sk, who) in enumerate(zip(prefixes[ITEM].to_list(), prefixes["skipped"].to_list(), given)):
        n = min(len(its), max_len)
        seqs[i, H + max_len - n:], fb[i, H + max_len - n:] = its[-n:], sk[-n:]
        if order is None:
            continue
        who = who if who is not None else listener
        past_items = past_skips = np.zeros(0, np.int32)
        if who is not None:
            found = order.listener_plays(who)
            if found is None:
                shown_names = ", ".join(names[:5]) + (f" (and {len(names) - 5:,} more)" if len(names) > 5 else "")
                raise InputError(f"{shown}: listener {who!r} is not in dataset {cfg.dataset}; its listeners: "
                                 f"{shown_names or 'none (the log has no user column)'}")
            span, users[i] = found
            past_items, past_skips = order.items[span], order.skips[span]
            used[who] = len(past_items)
        seqs[i, :H], fb[i, :H], succ[i, H:] = prefix_context(past_items, past_skips, np.asarray(its, np.int32),
                                                             np.asarray(sk, np.int8), max_len, H, K, W)
    if order is None:
        return {"seqs": seqs, "fb": fb}, {}
    arrays = {"seqs": seqs, "fb": fb, "user": users}
    if K:
        arrays["succ"] = succ
    return arrays, {"listeners": used, "without_listener": sum(1 for w in given if (w or listener) is None)}


def track_names(key: str | None, artist: str | None, title: str | None) -> tuple[str, str]:
    """(artist, title) of a track: the items' columns, else the two halves of an ``artist<US>title``
    key; a key of another form (an id) stands as the title."""
    if artist or title:
        return artist or "", title or ""
    key = key or ""
    if SEP in key:
        a, _, t = key.partition(SEP)
        return a, t
    return "", key


def display_name(key: str | None, artist: str | None, title: str | None) -> str:
    """``artist – title`` for people to read (the title alone when the artist is unknown)."""
    a, t = track_names(key, artist, title)
    return f"{a} – {t}" if a else t


def preview(recs: pl.DataFrame) -> list[dict]:
    """The first sessions' top tracks as ``{"session", "tracks": [(rank, "artist – title", score)]}``."""
    out = []
    for session in recs["session"].unique(maintain_order=True).head(PREVIEW_SESSIONS).to_list():
        top = recs.filter((pl.col("session") == session) & (pl.col("rank") <= PREVIEW_TRACKS))
        out.append({"session": session, "tracks": [
            (r["rank"], display_name(r[TRACK], r["artist"], r["title"]), float(r["score"]))
            for r in top.iter_rows(named=True)]})
    return out


def find_track(items: pl.DataFrame, artist: str, title: str, dataset: str) -> int:
    """The item id of the one track named ``artist`` / ``title`` (case-insensitive; an exact-case
    match settles a tie); an error listing close names when none or several fit."""
    names = [track_names(k, a, t) for k, a, t in zip(items[TRACK], items["artist"], items["title"])]
    wanted = (artist.strip().casefold(), title.strip().casefold())
    hits = [i for i, (a, t) in enumerate(names) if (a.casefold(), t.casefold()) == wanted]
    exact = [i for i in hits if names[i] == (artist.strip(), title.strip())]
    hits = exact if len(exact) == 1 else hits
    asked = f"--artist {artist!r} --title {title!r}"
    if len(hits) == 1:
        return int(items[ITEM][hits[0]])
    if hits:
        keys = "; ".join(f"{display_name(None, *names[i])} (track_key {items[TRACK][i]!r})" for i in hits[:5])
        raise InputError(f"{asked} fits {len(hits)} tracks of dataset {dataset}: {keys}; pass the one you mean as "
                         "track_key in a --sessions file")
    shown = [f"{a} – {t}".casefold() for a, t in names]
    close = difflib.get_close_matches(f"{wanted[0]} – {wanted[1]}", shown, n=5, cutoff=0.6)
    if not close:  # the title alone, for a misspelt or missing artist
        close = [shown[i] for i in _close_indices([t.casefold() for _, t in names], wanted[1])]
    hint = "; close: " + "; ".join(display_name(None, *names[shown.index(c)]) for c in close) if close else ""
    raise InputError(f"{asked}: no such track in dataset {dataset}{hint}")


def _close_indices(texts: list[str], text: str) -> list[int]:
    found = difflib.get_close_matches(text, texts, n=5, cutoff=0.6)
    return [texts.index(f) for f in found]


def _read_parquet(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise InputError(f"{path}: no such file; pass a parquet file of session plays")
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for unreadable files
        raise InputError(f"{path}: not a readable parquet file ({type(exc).__name__}); write the prefixes "
                         "with columns session, track_key (or item_id), optional skipped, position") from None


def _session_plays(raw: pl.DataFrame, items: pl.DataFrame, shown: str) -> pl.DataFrame:
    """``session, item_id, skipped`` per play in listening order; item_id null for a track outside
    the catalogue."""
    cols = set(raw.columns)
    missing = [c for c in ("session",) if c not in cols]
    if missing or not cols & {TRACK, ITEM}:
        raise InputError(f"{shown}: needs columns 'session' and 'track_key' or 'item_id'; it has "
                                  f"{', '.join(raw.columns)}")
    if raw.height == 0:
        raise EmptyInputError(f"{shown}: no rows; add at least one play per session")
    frame = raw.with_row_index("_row")
    order = ["session", "position", "_row"] if "position" in cols else ["session", "_row"]
    skipped = pl.col("skipped").cast(pl.Int8).fill_null(0) if "skipped" in cols else pl.lit(0, pl.Int8)
    if ITEM in cols:
        known = pl.col(ITEM).cast(pl.Int32, strict=False)
        frame = frame.with_columns(pl.when(known.is_between(1, items.height)).then(known).alias(ITEM))
    else:
        frame = frame.join(items.select(TRACK, ITEM), on=TRACK, how="left")
    keep = ["session", ITEM, "skipped"]
    if "listener" in cols:
        frame, keep = frame.with_columns(pl.col("listener").cast(pl.String)), keep + ["listener"]
    return frame.with_columns(skipped.alias("skipped")).sort(order).select(keep)


def _prefixes(plays: pl.DataFrame) -> pl.DataFrame:
    """One row per session: its plays' item ids and skip flags in listening order (lists), and its
    listener where the plays name one."""
    extra = [pl.col("listener").drop_nulls().first()] if "listener" in plays.columns else []
    return plays.group_by("session", maintain_order=True).agg(pl.col(ITEM), pl.col("skipped"), *extra)
