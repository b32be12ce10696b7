"""Ids, pad conventions and the column names of every artifact, written down once.

Item ids
    ``PAD = 0`` pads sequences; real tracks are ``1..n_items``; ``MASK = n_items + 1`` is the
    cloze token of masked (BERT4Rec-style) models.  Ids are dense and deterministic: tracks are
    ordered by play count (descending) and then by their key, so id 1 is the most played track.

Sequences
    Rows are left-padded: the newest play sits in the last column.  ``seqs: int32[n_rows, max_len]``
    holds item ids, ``skips: int8[n_rows, max_len]`` holds 1 for a skipped play and 0 otherwise
    (0 under padding too; padding is recognised by ``seqs == PAD``).  ``next_item`` and
    ``next_pos`` have the same shape and hold, for every position, the next track of the session
    and the next *non-skipped* track of the session (``PAD`` where there is none).
"""

from __future__ import annotations

FORMAT_VERSION = 1  # bump when the files prep writes change meaning

PAD = 0


def mask_id(n_items: int) -> int:
    """Id of the cloze token for a catalogue of ``n_items`` tracks."""
    return n_items + 1


# Canonical play table: what every reader hands to the SQL steps (view ``plays``).
SRC_ROW = "src_row"  # int64, order of the row in the source, breaks timestamp ties
USER = "user_id"  # varchar
TS = "ts"  # timestamp, play start (estimated as end - played when only the end is known)
TS_END = "ts_end"  # timestamp or null, play end when the source gives it
TRACK = "track_key"  # varchar, the source's track identity
ARTIST = "artist"  # varchar or null
TITLE = "title"  # varchar or null
PLAYED_MS = "played_ms"  # int64 or null
DURATION_MS = "duration_ms"  # int64 or null, track length when known
SKIP_FLAG = "skip_flag"  # integer or null: 0 / 1 the source's own skip label; 2 / 3 kept / skipped by its end reason (Spotify extended history)
SESSION_HINT = "session_hint"  # varchar or null, the source's own session id
POSITION_HINT = "position_hint"  # int64 or null, the source's own order inside a session
IS_MEDIA = "is_podcast"  # boolean, true for podcast / audiobook rows

PLAY_COLUMNS = (
    SRC_ROW, USER, TS, TS_END, TRACK, ARTIST, TITLE, PLAYED_MS, DURATION_MS,
    SKIP_FLAG, SESSION_HINT, POSITION_HINT, IS_MEDIA,
)

# Column types below are Arrow type names (documentation; the writers set them).
# events.parquet: one row per kept play, sorted by (session_idx, position).
SPLIT = "split"
SESSION = "session_idx"  # int64, dense 0..n_sessions-1 in (split, start time) order
POSITION = "position"  # int32, 0-based position inside the session
ITEM = "item_id"  # int32, 1..n_items
IS_SKIP = "is_skip"  # int8, 1 = skipped

EVENTS_SCHEMA = {
    SPLIT: "string",
    SESSION: "int64",
    POSITION: "int32",
    USER: "string",
    ITEM: "int32",
    TS: "timestamp[us]",
    PLAYED_MS: "int64",
    IS_SKIP: "int8",
}

# items.parquet: one row per track id.
ITEMS_SCHEMA = {
    ITEM: "int32",
    TRACK: "string",
    ARTIST: "string",
    TITLE: "string",
    "plays": "int64",
    "skips": "int64",
    "train_plays": "int64",
}

SPLITS = ("train", "valid", "test")
