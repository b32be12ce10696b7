"""``toolkit recommend``: the top-k next tracks for session prefixes, from a run's best checkpoint.

Input: a parquet file with one row per play of each prefix: ``session`` (any id), and the track as
``track_key`` (the dataset's track identity, see ``items.parquet``) or ``item_id``; optional
``skipped`` (bool) for models that read feedback, optional ``position`` to order the plays (else
file order).  Output: one row per (session, rank) with the item id, score, track key, artist and
title.  Plays of tracks outside the catalogue cannot be encoded: they are left out of the prefix
and counted; a session left empty gets no recommendations and is counted too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from toolkit.artifacts import Workspace, atomic_path, read_frame, read_manifest
from toolkit.errors import EmptyInputError, InputError
from toolkit.report import scorer_for, select_runs
from toolkit.schema import ITEM, PAD, TRACK

MAX_K = 1000


def recommend(ws: Workspace, run_id: str, sessions: Path, k: int, out: Path, device: str = "cpu",
              allow_unfinished: bool = False) -> dict:
    """Write the top-``k`` tracks per session of ``sessions`` to ``out``; return the counts."""
    recs, counts = top_k(ws, run_id, _read_parquet(sessions), k, device, allow_unfinished, str(sessions))
    with atomic_path(out) as tmp:
        recs.write_parquet(tmp)
    return {**counts, "out": str(out)}


def top_k(ws: Workspace, run_id: str, plays: pl.DataFrame, k: int, device: str = "cpu",
          allow_unfinished: bool = False, shown: str = "the plays") -> tuple[pl.DataFrame, dict]:
    """The top-``k`` tracks per session of ``plays`` (the sessions file's columns, see above) as a
    frame of ``session, rank, item_id, score, track_key, artist, title``; and the counts.

    ``shown`` names the plays in messages (the file they came from)."""
    if not 1 <= k <= MAX_K:
        raise InputError(f"-k {k}: choose 1..{MAX_K}")
    run = select_runs(ws, [run_id], None, allow_unfinished)[0]
    ds = ws.dataset(run["config"].dataset)
    manifest = read_manifest(ds)
    items = read_frame(ds.items, columns=[ITEM, TRACK, "artist", "title"])
    plays = _session_plays(plays, items, shown)
    known = plays.filter(pl.col(ITEM).is_not_null())
    max_len = manifest["max_len"]
    seqs, fb, keys = _prefix_arrays(known, max_len)
    dev = torch.device(device)
    scorer = scorer_for(ws, run, dev)
    rows_out = []
    for lo in range(0, len(keys), 256):
        hi = min(lo + 256, len(keys))
        batch = {"seqs": torch.from_numpy(seqs[lo:hi]).to(dev), "fb": torch.from_numpy(fb[lo:hi]).to(dev)}
        rows = torch.arange(hi - lo, device=dev)
        cols = torch.full((hi - lo,), max_len - 1, device=dev)
        with torch.no_grad():
            scores = scorer.scores(batch, rows, cols).float()
        top = torch.topk(scores, k=min(k, manifest["items"]), dim=1)
        rows_out.append(pl.DataFrame({
            "session": np.repeat(keys[lo:hi], top.indices.shape[1]),
            "rank": np.tile(np.arange(1, top.indices.shape[1] + 1, dtype=np.int32), hi - lo),
            ITEM: top.indices.cpu().numpy().astype(np.int32).ravel(),
            "score": top.values.cpu().numpy().ravel(),
        }, schema_overrides={"session": plays.schema["session"]}))
    recs = pl.concat(rows_out) if rows_out else pl.DataFrame(schema={"session": plays.schema["session"],
                                                                    "rank": pl.Int32, ITEM: pl.Int32,
                                                                    "score": pl.Float32})
    recs = recs.join(items, on=ITEM, how="left").sort("session", "rank", maintain_order=True)
    n_sessions = plays["session"].n_unique()
    return recs, {"run": run["id"], "sessions": n_sessions, "recommended": len(keys),
                  "empty_sessions": n_sessions - len(keys), "plays": plays.height,
                  "unknown_plays": plays.height - known.height, "rows": recs.height}


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
    return frame.with_columns(skipped.alias("skipped")).sort(order).select("session", ITEM, "skipped")


def _prefix_arrays(plays: pl.DataFrame, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left-padded (S, max_len) item and feedback arrays of the last ``max_len`` plays per session."""
    grouped = plays.group_by("session", maintain_order=True).agg(pl.col(ITEM).tail(max_len),
                                                                 pl.col("skipped").tail(max_len))
    seqs = np.full((grouped.height, max_len), PAD, np.int64)
    fb = np.zeros((grouped.height, max_len), np.int64)
    for i, (its, sk) in enumerate(zip(grouped[ITEM].to_list(), grouped["skipped"].to_list())):
        seqs[i, max_len - len(its):] = its
        fb[i, max_len - len(sk):] = sk
    return seqs, fb, grouped["session"].to_numpy()
