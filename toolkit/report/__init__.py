"""``toolkit report``: score finished runs and compare them, then write what was found.

The package, from the bottom up (each module imports only those above it):

* ``protocol``: how runs are scored (split, positions, exclude-played, bootstrap);
* ``statistics``: intervals over seeds and the paired two-level bootstrap (pure functions);
* ``grouping``: which runs form a group, its key, the baseline groups;
* ``records``: the report as typed records (``Report``, ``Group``, ``Comparison``, ``Verdict``) and
  their JSON form;
* ``scoring``: ``assemble_report`` scores the runs (``toolkit.runs`` loads them) into a ``Report``;
  ``build_report`` gives its JSON form, which the views below read;
* ``format``: numbers and names as every view shows them; ``signals``: the sentences that open a
  report; ``plots``: its figures; ``render``: Markdown, HTML and the terminal tables from one
  block model; ``results_doc``: the results document that ``toolkit study --check`` compares.

The names other modules use are importable from the package itself; each is loaded on first use,
so reading the package (the CLI's help, ``render`` alone) does not load torch.
"""

from __future__ import annotations

import importlib

# public name -> the module of this package that defines it
_HOMES = {
    "Protocol": "protocol", "EVAL_VERSION": "protocol",
    "seed_interval": "statistics", "per_query_values": "statistics", "session_sums": "statistics",
    "by_unit": "statistics", "paired_bootstrap": "statistics",
    "group_identity": "grouping", "group_runs": "grouping", "shared_settings": "grouping", "RunGroup": "grouping",
    "Report": "records", "Group": "records", "Comparison": "records", "Verdict": "records", "read_report": "records",
    "build_report": "scoring", "assemble_report": "scoring", "score_run": "scoring", "resampling_units": "scoring", "split_summary": "scoring",
    "track_skip_signal": "scoring", "cold_targets": "scoring", "METRICS": "scoring", "PRIMARY": "scoring",
    "PAIRED": "scoring", "LOWER_IS_BETTER": "scoring",
    "write_report": "render", "to_markdown": "render", "to_html": "render",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
