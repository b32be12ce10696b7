"""The results document (e.g. ``docs/results.md``): one generated section per dataset, and the check
that a fresh run of a study reproduces a section's main table within the intervals it states.

A section sits between ``<!-- study:NAME:begin -->`` and ``<!-- study:NAME:end -->`` so that a study
rewrites its own section and leaves the rest of the document (hand-written prose, other datasets)
alone.  The check reads the Markdown table back rather than a side file: what is verified is exactly
what a reader of the document sees.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from toolkit.artifacts import atomic_path
from toolkit.errors import ArtifactMissingError

MAIN_TABLE = "### Test metrics"
COUNTS = ("seeds", "sessions", "positive queries", "skip queries")  # must agree exactly
PRINTED = 0.0001  # both sides print 4 decimals: two roundings of half a unit each


def _markers(dataset: str) -> tuple[str, str]:
    return f"<!-- study:{dataset}:begin -->", f"<!-- study:{dataset}:end -->"


def write_section(path: Path, dataset: str, section: str) -> None:
    """Replace (or add) this dataset's section of the results document, atomically."""
    begin, end = _markers(dataset)
    block = f"{begin}\n{section}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Results\n\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def drop_section(path: Path, dataset: str) -> None:
    """Remove a section (e.g. a check record that a rewritten section has made stale), if present."""
    if not path.exists():
        return
    begin, end = _markers(dataset)
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(r"\n*" + re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        with atomic_path(path) as tmp:
            tmp.write_text(pattern.sub("\n", text).rstrip() + "\n", encoding="utf-8")


def read_section(path: Path, dataset: str) -> str:
    begin, end = _markers(dataset)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ArtifactMissingError(f"{path}: cannot read the results document ({e.strerror or e})") from None
    found = re.search(re.escape(begin) + r"(.*?)" + re.escape(end), text, re.DOTALL)
    if not found:
        raise ArtifactMissingError(f"{path}: no section for dataset {dataset!r} (no `{begin}` marker); "
                                   "check a dataset the document has, or write its section with --results")
    return found.group(1)


@dataclass(frozen=True)
class Value:
    mean: float
    half: float | None  # half-width of the stated interval; None for one seed or a count


_NUMBER = r"[-+]?\d[\d,]*(?:\.\d+)?"


def _cell(text: str) -> Value | None:
    text = html.unescape(text.replace("\\|", "|")).replace("**", "").strip()
    m = re.fullmatch(rf"({_NUMBER})(?:\s*±\s*({_NUMBER}))?(?:\s*\(1 seed\))?", text)
    if not m:
        return None
    return Value(float(m.group(1).replace(",", "")), float(m.group(2)) if m.group(2) else None)


def parse_main_table(markdown: str) -> dict[str, dict[str, Value]]:
    """group -> column -> value, from the first Markdown table after the main-table heading."""
    start = markdown.find(MAIN_TABLE)
    if start < 0:
        return {}
    lines = [ln for ln in markdown[start:].splitlines()[1:] if ln.strip()]
    rows = []
    for ln in lines:
        if not ln.startswith("|"):
            if rows:
                break
            continue
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", ln.strip())[1:-1]])
    if len(rows) < 3:
        return {}
    header = [h.replace(" ↓", "").strip() for h in rows[0]]
    table = {}
    for row in rows[2:]:
        name = html.unescape(row[0].replace("\\|", "|")).replace("**", "").strip()
        table[name] = {h: v for h, c in zip(header[1:], row[1:]) if (v := _cell(c)) is not None}
    return table


@dataclass(frozen=True)
class Agreement:
    group: str
    column: str
    document: Value | None
    fresh: Value | None
    ok: bool | None  # None: only one side has it


def compare(document: dict[str, dict[str, Value]], fresh: dict[str, dict[str, Value]]) -> list[Agreement]:
    """Every cell of the document's table against the fresh run: a mean must fall inside the stated
    interval, a one-seed value (the deterministic baselines) must be the same, a count must be equal."""
    out = []
    for group in list(document) + [g for g in fresh if g not in document]:
        doc_row, new_row = document.get(group, {}), fresh.get(group, {})
        for col in list(doc_row) + [c for c in new_row if c not in doc_row]:
            d, f = doc_row.get(col), new_row.get(col)
            if d is None or f is None:
                out.append(Agreement(group, col, d, f, None))
                continue
            if col in COUNTS:
                ok = d.mean == f.mean
            else:
                ok = abs(f.mean - d.mean) <= (d.half or 0.0) + PRINTED + 1e-12
            out.append(Agreement(group, col, d, f, ok))
    return out


def document_table(path: Path, dataset: str) -> dict[str, dict[str, Value]]:
    """The main table of the document's section for ``dataset``; an error when there is none."""
    table = parse_main_table(read_section(path, dataset))
    if not table:
        raise ArtifactMissingError(f"{path}: the {dataset!r} section has no `{MAIN_TABLE}` table to check against")
    return table


def _shown(v: Value | None) -> str:
    if v is None:
        return "–"
    return f"{v.mean:,.4f}".rstrip("0").rstrip(".") + (f" ± {v.half:.4f}" if v.half is not None else "")


def agreement_rows(agreements: list[Agreement]) -> list[tuple[str, str, str, str]]:
    """Per group: (group, "agreeing/compared", the cells that disagree, the cells only one side has)."""
    groups: dict[str, list[Agreement]] = {}
    for a in agreements:
        groups.setdefault(a.group, []).append(a)
    rows = []
    for group, items in groups.items():
        both = [a for a in items if a.ok is not None]
        bad = [f"{a.column}: {_shown(a.document)} vs {_shown(a.fresh)}" for a in both if not a.ok]
        one = sorted({a.column for a in items if a.ok is None})
        if len(one) == len(items):
            one = ["whole group (" + ("not in this run" if items[0].fresh is None else "not in the document") + ")"]
        rows.append((group, f"{sum(bool(a.ok) for a in both)}/{len(both)}", "; ".join(bad), ", ".join(one)))
    return rows


def tally(agreements: list[Agreement]) -> tuple[int, int]:
    """(cells compared, cells that disagree); cells only one side has are neither."""
    return sum(1 for a in agreements if a.ok is not None), sum(1 for a in agreements if a.ok is False)


def check_record(dataset: str, agreements: list[Agreement], command: str, when: str, trained: int,
                 total: int) -> str:
    """The outcome of a check as a block of the document, so its claim of reproducibility is generated."""
    checked, failed = tally(agreements)
    lines = [f"### Reproduction check: {dataset}", "",
             f"`{command}` on {when}: trained {trained} of the {total} runs itself "
             f"({total - trained} were already in its workspace), then compared its main table with the "
             f"`{dataset}` section above: a mean must fall inside the stated interval (± 0.0001 for the "
             "printed rounding), a single-seed value and a count must be the same.", "",
             "| group | cells that agree | outside the stated interval / different | only one side has |",
             "|---|---:|---|---|"]
    lines += [f"| {g} | {n} | {bad or ''} | {one} |" for g, n, bad, one in agreement_rows(agreements)]
    lines += ["", f"**{checked - failed} of {checked} cells reproduced**" + (f"; **{failed} did not**." if failed
                                                                              else ".")]
    return "\n".join(lines)
