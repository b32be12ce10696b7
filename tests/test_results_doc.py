"""The results document: sections replaced in place, the main table read back, agreement by hand."""

from __future__ import annotations

import pytest

from toolkit.errors import ArtifactMissingError
from toolkit.report.results_doc import (
    Value, compare, document_table, drop_section, parse_main_table, read_section, write_section,
)

TABLE = """### Test metrics (mean ± 95 % interval over seeds)

| group (options) | hr@10 | skip_hr@10 ↓ | seeds | skip queries |
|---|---:|---:|---:|---:|
| pop / all | 0.0011 (1 seed) | **0.0017 (1 seed)** | 1 | 38,048 |
| sasrec / a\\|b | **0.0401 ± 0.0034** | 0.0169 ± 0.0021 | 3 | 38,048 |

Text after the table.
"""


def test_sections_are_replaced_in_place_and_read_back(tmp_path):
    doc = tmp_path / "r.md"
    write_section(doc, "one", "first")
    write_section(doc, "two", "second")
    write_section(doc, "one", "again")
    text = doc.read_text()
    assert text.count("study:one:begin") == 1 and text.index("again") < text.index("second")
    assert read_section(doc, "one").strip() == "again"
    write_section(doc, "one:check", "record")
    assert read_section(doc, "one:check").strip() == "record" and read_section(doc, "one").strip() == "again"
    drop_section(doc, "one:check")
    drop_section(doc, "one:check")  # absent: nothing to do
    assert "record" not in doc.read_text() and read_section(doc, "two").strip() == "second"
    with pytest.raises(ArtifactMissingError, match="no section for dataset 'three'"):
        read_section(doc, "three")
    with pytest.raises(ArtifactMissingError, match="no `### Test metrics` table"):
        document_table(doc, "one")


def test_main_table_is_parsed_with_bold_escapes_and_counts():
    t = parse_main_table("intro\n\n" + TABLE)
    assert list(t) == ["pop / all", "sasrec / a|b"]
    assert t["pop / all"]["skip_hr@10"] == Value(0.0017, None)
    assert t["sasrec / a|b"]["hr@10"] == Value(0.0401, 0.0034)
    assert t["sasrec / a|b"]["skip queries"] == Value(38048.0, None)


def test_agreement_by_hand():
    doc = {"g": {"hr@10": Value(0.0400, 0.0030), "mrr@10": Value(0.0100, None), "seeds": Value(3, None)},
           "gone": {"hr@10": Value(0.1, None)}}
    fresh = {"g": {"hr@10": Value(0.0431, 0.001), "mrr@10": Value(0.0101, None), "seeds": Value(3, None),
                   "auc": Value(0.5, 0.01)}}
    got = {(a.group, a.column): a.ok for a in compare(doc, fresh)}
    # 0.0431 - 0.0400 = 0.0031 <= 0.0030 + 0.0001 of printing: inside; one seed may differ by the rounding only
    assert got == {("g", "hr@10"): True, ("g", "mrr@10"): True, ("g", "seeds"): True, ("g", "auc"): None,
                   ("gone", "hr@10"): None}
    fresh["g"]["hr@10"] = Value(0.0432, 0.001)
    fresh["g"]["mrr@10"] = Value(0.0102, None)
    fresh["g"]["seeds"] = Value(2, None)
    got = {(a.group, a.column): a.ok for a in compare(doc, fresh)}
    assert got[("g", "hr@10")] is False and got[("g", "mrr@10")] is False and got[("g", "seeds")] is False
