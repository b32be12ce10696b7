"""Records built by hand for tests that need one without preparing a dataset."""

from __future__ import annotations

from toolkit.manifest import Manifest


def manifest_stub(fingerprint: str = "f" * 64, pipeline: str | None = "p", **fields) -> Manifest:
    """A manifest of an empty dataset: what a run id reads (fingerprint, pipeline, run_ids) set as given."""
    base = dict(name="d", format="generic", fingerprint=fingerprint, rows_in=0, rows_kept=0, rows_dropped={}, users=0,
                sessions=0, items=0, skip_share=0.0, split_mode="time", splits={}, max_len=2, pipeline=pipeline)
    return Manifest(**{**base, **fields})
