"""Kernels against the plain-Python references in ``tests/reference.py``, plus sampler properties.

Run it twice: as is, and with ``NUMBA_DISABLE_JIT=1`` so coverage sees the kernel bodies.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from kernels import build_sequences, count_windows, conventions, popularity_cdf, sample_negatives
from toolkit import schema
from toolkit.schema import PAD

try:
    from tests import reference as ref
except ImportError:  # tests/ itself is on sys.path instead of the repo root
    import reference as ref

KERNEL_DIR = Path(kernels.__file__).parent
OUTPUT_NAMES = ("seqs", "fb", "next_item", "next_pos", "row_session")


def _csr(sessions):
    """[[(item, skip), ...], ...] -> (items int32, skips int8, offsets int64)."""
    items = np.array([i for s in sessions for i, _ in s], dtype=np.int32)
    skips = np.array([k for s in sessions for _, k in s], dtype=np.int8)
    offsets = np.zeros(len(sessions) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in sessions])
    return items, skips, offsets


def _assert_matches_reference(items, skips, offsets, max_len):
    got = build_sequences(items, skips, offsets, max_len)
    want = ref.build_sequences(items, skips, offsets, max_len)
    for name, g, w in zip(OUTPUT_NAMES, got, want):
        assert g.dtype == w.dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)
    assert count_windows(offsets, max_len) == ref.count_windows(offsets, max_len) == got[0].shape[0]
    return got


# ---------------------------------------------------------------- build_sequences: edge cases


def test_pad_is_zero_and_kernels_agree_with_the_schema():
    assert conventions.PAD == schema.PAD == PAD == ref.PAD == 0


def test_single_event_session():
    seqs, fb, nxt, pos, rs = _assert_matches_reference(*_csr([[(7, 1)]]), max_len=3)
    np.testing.assert_array_equal(seqs, [[0, 0, 7]])
    np.testing.assert_array_equal(fb, [[0, 0, 1]])
    np.testing.assert_array_equal(nxt, [[0, 0, 0]])
    np.testing.assert_array_equal(pos, [[0, 0, 0]])
    np.testing.assert_array_equal(rs, [0])


def test_session_exactly_max_len():
    seqs, fb, nxt, pos, rs = _assert_matches_reference(*_csr([[(1, 0), (2, 1), (3, 0)]]), max_len=3)
    np.testing.assert_array_equal(seqs, [[1, 2, 3]])
    np.testing.assert_array_equal(nxt, [[2, 3, 0]])
    np.testing.assert_array_equal(pos, [[3, 3, 0]])


def test_session_max_len_plus_one_gives_two_windows():
    session = [(1, 0), (2, 1), (3, 1), (4, 0)]
    seqs, fb, nxt, pos, rs = _assert_matches_reference(*_csr([session]), max_len=3)
    np.testing.assert_array_equal(seqs, [[0, 0, 1], [2, 3, 4]])
    np.testing.assert_array_equal(fb, [[0, 0, 0], [1, 1, 0]])
    # targets cross the window boundary: they look at the whole session
    np.testing.assert_array_equal(nxt, [[0, 0, 2], [3, 4, 0]])
    np.testing.assert_array_equal(pos, [[0, 0, 4], [4, 4, 0]])
    np.testing.assert_array_equal(rs, [0, 0])


def test_all_skip_session_has_no_next_pos():
    seqs, fb, nxt, pos, rs = _assert_matches_reference(*_csr([[(5, 1), (6, 1), (7, 1)]]), max_len=2)
    assert (pos == PAD).all()
    np.testing.assert_array_equal(nxt, [[0, 6], [7, 0]])


def test_only_non_skip_is_last_play():
    seqs, fb, nxt, pos, rs = _assert_matches_reference(*_csr([[(5, 1), (6, 1), (9, 0)]]), max_len=4)
    np.testing.assert_array_equal(pos, [[0, 9, 9, 0]])


def test_empty_sessions_emit_no_rows():
    sessions = [[], [(1, 0)], [], [], [(2, 1), (3, 0)], []]
    seqs, fb, nxt, pos, rs = _assert_matches_reference(*_csr(sessions), max_len=2)
    np.testing.assert_array_equal(rs, [1, 4])
    np.testing.assert_array_equal(seqs, [[0, 1], [2, 3]])


def test_max_len_one():
    seqs, fb, nxt, pos, rs = _assert_matches_reference(*_csr([[(1, 1), (2, 1), (3, 0)], [(4, 0)]]), max_len=1)
    np.testing.assert_array_equal(seqs[:, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(nxt[:, 0], [2, 3, 0, 0])
    np.testing.assert_array_equal(pos[:, 0], [3, 3, 0, 0])
    np.testing.assert_array_equal(rs, [0, 0, 0, 1])


def test_zero_sessions():
    items, skips, offsets = _csr([])
    got = _assert_matches_reference(items, skips, offsets, max_len=4)
    assert [a.shape for a in got] == [(0, 4)] * 4 + [(0,)]
    assert [a.dtype for a in got] == [np.int32, np.int8, np.int32, np.int32, np.int64]


def test_count_windows_simple():
    assert count_windows(np.array([0, 0, 1, 5, 11], dtype=np.int64), 3) == 0 + 1 + 2 + 2


# ---------------------------------------------------------------- build_sequences: property test


@st.composite
def ragged_events(draw):
    lengths = draw(st.lists(st.integers(0, 12), max_size=8))
    n = sum(lengths)
    items = draw(st.lists(st.integers(1, 20), min_size=n, max_size=n))
    skips = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths, dtype=np.int64)
    max_len = draw(st.integers(1, 6))
    return np.array(items, dtype=np.int32), np.array(skips, dtype=np.int8), offsets, max_len


@settings(max_examples=200, deadline=None)
@given(ragged_events())
def test_build_sequences_matches_reference(case):
    _assert_matches_reference(*case)


# ---------------------------------------------------------------- build_sequences: bad input


def _good():
    return dict(
        items=np.array([1, 2, 3, 4], dtype=np.int32),
        skips=np.array([0, 1, 0, 0], dtype=np.int8),
        offsets=np.array([0, 2, 4], dtype=np.int64),
        max_len=3,
    )


BAD_SEQUENCE_INPUTS = [
    ("items", [1, 2, 3, 4], TypeError, "numpy array"),
    ("items", np.array([1, 2, 3, 4], dtype=np.int64), TypeError, "items.astype(np.int32)"),
    ("skips", np.array([0, 1, 0, 0], dtype=np.bool_), TypeError, "skips.astype(np.int8)"),
    ("offsets", np.array([0, 2, 4], dtype=np.int32), TypeError, "offsets.astype(np.int64)"),
    ("items", np.arange(1, 9, dtype=np.int32)[::2], ValueError, "np.ascontiguousarray(items)"),
    ("items", np.array([[1, 2], [3, 4]], dtype=np.int32), ValueError, "1-D"),
    ("skips", np.array([0, 1, 0], dtype=np.int8), ValueError, "equal lengths"),
    ("offsets", np.array([1, 2, 4], dtype=np.int64), ValueError, "offsets[0]"),
    ("offsets", np.array([0, 2, 3], dtype=np.int64), ValueError, "offsets[-1]"),
    ("offsets", np.array([0, 3, 2, 4], dtype=np.int64), ValueError, "non-decreasing"),
    ("offsets", np.array([], dtype=np.int64), ValueError, "n_sessions + 1"),
    ("max_len", 0, ValueError, "max_len must be > 0"),
    ("max_len", 2.0, TypeError, "max_len must be an int"),
    ("max_len", True, TypeError, "max_len must be an int"),
    ("skips", np.array([0, 2, 0, 0], dtype=np.int8), ValueError, "only 0 (played) or 1 (skipped)"),
    ("skips", np.array([0, -1, 0, 0], dtype=np.int8), ValueError, "only 0 (played) or 1 (skipped)"),
    ("items", np.array([1, 0, 3, 4], dtype=np.int32), ValueError, "PAD=0"),
    ("items", np.array([1, -5, 3, 4], dtype=np.int32), ValueError, ">= 1"),
]


@pytest.mark.parametrize(("arg", "value", "exc", "fragment"), BAD_SEQUENCE_INPUTS)
def test_build_sequences_rejects_bad_input(arg, value, exc, fragment):
    kwargs = _good() | {arg: value}
    with pytest.raises(exc, match=re.escape(fragment)):
        build_sequences(**kwargs)


def test_count_windows_rejects_bad_input():
    with pytest.raises(ValueError, match="non-decreasing"):
        count_windows(np.array([0, 3, 1], dtype=np.int64), 2)
    with pytest.raises(TypeError, match=re.escape("offsets.astype(np.int64)")):
        count_windows(np.array([0, 3], dtype=np.int32), 2)
    with pytest.raises(ValueError, match="max_len"):
        count_windows(np.array([0, 3], dtype=np.int64), -1)


# ---------------------------------------------------------------- popularity_cdf


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0])
def test_popularity_cdf_matches_reference(beta):
    counts = np.array([99, 5, 0, 1, 12, 3, 0, 7], dtype=np.int64)
    cdf = popularity_cdf(counts, beta)
    np.testing.assert_allclose(cdf, ref.popularity_cdf(counts, beta), rtol=1e-12, atol=0)
    assert cdf.dtype == np.float64 and cdf[0] == 0.0 and cdf[-1] == 1.0
    assert (np.diff(cdf) >= 0).all()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=40).filter(any),
    st.floats(0.0, 2.0),
)
def test_popularity_cdf_property(counts, beta):
    counts = np.array([0] + counts, dtype=np.int64)
    cdf = popularity_cdf(counts, beta)
    np.testing.assert_allclose(cdf, ref.popularity_cdf(counts, beta), rtol=1e-9, atol=1e-15)
    assert cdf[0] == 0.0 and cdf[-1] == 1.0 and (np.diff(cdf) >= 0).all()


@pytest.mark.parametrize(
    ("counts", "beta", "exc", "fragment"),
    [
        (np.array([0, 1, 2], dtype=np.int32), 1.0, TypeError, "counts.astype(np.int64)"),
        (np.array([0, 1, -2], dtype=np.int64), 1.0, ValueError, "counts must be >= 0"),
        (np.array([0, 1, 2], dtype=np.int64), -1.0, ValueError, "beta must be finite and >= 0"),
        (np.array([0, 1, 2], dtype=np.int64), float("nan"), ValueError, "beta must be finite"),
        (np.array([0, 1, 2], dtype=np.int64), "1", TypeError, "beta must be a float"),
        (np.array([5], dtype=np.int64), 1.0, ValueError, "n_items + 1 >= 2"),
        (np.array([5, 0, 0], dtype=np.int64), 1.0, ValueError, "total weight"),
    ],
)
def test_popularity_cdf_rejects_bad_input(counts, beta, exc, fragment):
    with pytest.raises(exc, match=re.escape(fragment)):
        popularity_cdf(counts, beta)


# ---------------------------------------------------------------- sample_negatives: properties


def _assert_valid_negatives(neg, seqs, exclude, n_items, k):
    assert neg.dtype == np.int32 and neg.shape == (seqs.shape[0], k)
    for r in range(seqs.shape[0]):
        allowed = set(ref.allowed_items(seqs[r], exclude[r] if exclude is not None else [], n_items))
        assert set(neg[r].tolist()) <= allowed, r


@st.composite
def sampler_case(draw):
    n_items = draw(st.integers(1, 30))
    n_rows = draw(st.integers(0, 5))
    ids = st.integers(0, n_items)
    seqs = np.array(draw(st.lists(st.lists(ids, min_size=6, max_size=6), min_size=n_rows, max_size=n_rows)),
                    dtype=np.int32).reshape(n_rows, 6)
    exclude = None
    if draw(st.booleans()):
        exclude = np.array(draw(st.lists(st.lists(ids, min_size=3, max_size=3), min_size=n_rows, max_size=n_rows)),
                           dtype=np.int32).reshape(n_rows, 3)
    cdf = None
    if draw(st.booleans()):
        counts = draw(st.lists(st.integers(0, 5), min_size=n_items, max_size=n_items).filter(any))
        cdf = popularity_cdf(np.array([0] + counts, dtype=np.int64), draw(st.sampled_from([0.0, 0.75, 1.0])))
    return seqs, n_items, draw(st.integers(1, 20)), draw(st.integers(0, 2**32 - 1)), cdf, exclude


@settings(max_examples=200, deadline=None)
@given(sampler_case())
def test_sample_negatives_properties(case):
    seqs, n_items, k, seed, cdf, exclude = case
    some_row_full = any(
        not ref.allowed_items(seqs[r], exclude[r] if exclude is not None else [], n_items)
        for r in range(seqs.shape[0])
    )
    if some_row_full:
        with pytest.raises(ValueError, match="covers all"):
            sample_negatives(seqs, n_items, k, seed, cdf=cdf, exclude=exclude)
        return
    neg = sample_negatives(seqs, n_items, k, seed, cdf=cdf, exclude=exclude)
    _assert_valid_negatives(neg, seqs, exclude, n_items, k)
    assert (neg >= 1).all() and (neg <= n_items).all()
    np.testing.assert_array_equal(neg, sample_negatives(seqs, n_items, k, seed, cdf=cdf, exclude=exclude))


def test_sample_negatives_deterministic_per_seed():
    seqs = np.array([[0, 1, 2], [3, 4, 5]] * 50, dtype=np.int32)
    cdf = popularity_cdf(np.arange(101, dtype=np.int64), 1.0)
    for c in (None, cdf):
        a = sample_negatives(seqs, 100, 20, seed=7, cdf=c)
        np.testing.assert_array_equal(a, sample_negatives(seqs, 100, 20, seed=7, cdf=c))
        assert not np.array_equal(a, sample_negatives(seqs, 100, 20, seed=8, cdf=c))


def _chi_square(neg, probs):
    """Pearson statistic of all draws in ``neg`` against ``probs`` (index = item id), over ids with p > 0."""
    observed = np.bincount(neg.ravel(), minlength=probs.shape[0])
    assert observed[probs == 0].sum() == 0
    expected = probs * neg.size
    support = probs > 0
    return float((((observed - expected) ** 2)[support] / expected[support]).sum()), int(support.sum()) - 1


def _loose_bound(dof):
    # mean dof, std sqrt(2 dof); ten std above is far beyond chance yet catches real bias
    return dof + 10 * np.sqrt(2 * dof)


def test_uniform_negatives_are_uniform():
    n_items = 10
    seqs = np.tile(np.array([[0, 0, 3, 3]], dtype=np.int32), (2000, 1))
    neg = sample_negatives(seqs, n_items, 50, seed=123)
    _assert_valid_negatives(neg, seqs, None, n_items, 50)
    stat, dof = _chi_square(neg, ref.negative_probabilities(seqs[0], [], n_items))
    assert stat < _loose_bound(dof), stat


def test_popularity_negatives_follow_counts_pow_beta():
    n_items, beta = 12, 0.75
    counts = np.array([0, 50, 1, 7, 0, 20, 3, 9, 14, 2, 30, 5, 11], dtype=np.int64)
    cdf = popularity_cdf(counts, beta)
    seqs = np.tile(np.array([[0, 1]], dtype=np.int32), (2000, 1))
    exclude = np.tile(np.array([[10]], dtype=np.int32), (2000, 1))
    neg = sample_negatives(seqs, n_items, 50, seed=5, cdf=cdf, exclude=exclude)
    _assert_valid_negatives(neg, seqs, exclude, n_items, 50)
    assert not (neg == 4).any()  # zero plays, zero mass
    stat, dof = _chi_square(neg, ref.negative_probabilities(seqs[0], exclude[0], n_items, cdf))
    assert stat < _loose_bound(dof), stat


@pytest.mark.parametrize("beta", [None, 1.0])
def test_nearly_full_rows_fall_back_without_bias(beta):
    """998 of 1000 items excluded: rejection runs out of attempts and the scan takes over."""
    n_items, k = 1000, 400
    counts = np.arange(n_items + 1, dtype=np.int64)
    cdf = None if beta is None else popularity_cdf(counts, beta)
    excluded = np.array([i for i in range(1, n_items + 1) if i not in (17, 900)], dtype=np.int32)
    exclude = np.tile(excluded, (20, 1))
    seqs = np.zeros((20, 1), dtype=np.int32)
    neg = sample_negatives(seqs, n_items, k, seed=3, cdf=cdf, exclude=exclude)
    _assert_valid_negatives(neg, seqs, exclude, n_items, k)
    stat, dof = _chi_square(neg, ref.negative_probabilities(seqs[0], exclude[0], n_items, cdf))
    assert stat < _loose_bound(dof), stat


def test_single_allowed_item_and_zero_mass_fallback():
    seqs = np.array([[1, 2, 3, 0], [0, 0, 0, 0]], dtype=np.int32)
    cdf = popularity_cdf(np.array([0, 5, 5, 5, 0], dtype=np.int64), 1.0)  # item 4 has no mass
    np.testing.assert_array_equal(sample_negatives(seqs[:1], 4, 8, seed=0), np.full((1, 8), 4))
    # row 0 may only draw item 4, which has zero mass: uniform over the allowed set instead
    neg = sample_negatives(seqs, 4, 8, seed=0, cdf=cdf)
    np.testing.assert_array_equal(neg[0], np.full(8, 4))
    assert set(neg[1].tolist()) <= {1, 2, 3}


def _sampler_args():
    return dict(seqs=np.array([[0, 1, 2], [3, 4, 5]], dtype=np.int32), n_items=10, k=4, seed=0)


BAD_SAMPLER_INPUTS = [
    ("seqs", np.array([[0, 1, 2]], dtype=np.int64), TypeError, "seqs.astype(np.int32)"),
    ("seqs", np.array([0, 1, 2], dtype=np.int32), ValueError, "2-D"),
    ("seqs", np.asfortranarray(np.ones((2, 3), dtype=np.int32)), ValueError, "np.ascontiguousarray(seqs)"),
    ("seqs", np.array([[0, 1, 11]], dtype=np.int32), ValueError, "ids in 0..10"),
    ("seqs", np.array([[0, -1, 2]], dtype=np.int32), ValueError, "ids in 0..10"),
    ("n_items", 0, ValueError, "n_items must be > 0"),
    ("k", 0, ValueError, "k must be > 0"),
    ("k", 2.5, TypeError, "k must be an int"),
    ("seed", -1, ValueError, "seed must be in"),
    ("seed", 2**32, ValueError, "seed must be in"),
    ("seed", 1.0, TypeError, "seed must be an int"),
    ("exclude", np.zeros((3, 1), dtype=np.int32), ValueError, "one row per seqs row"),
    ("exclude", np.zeros((2, 1), dtype=np.int64), TypeError, "exclude.astype(np.int32)"),
    ("exclude", np.full((2, 1), 12, dtype=np.int32), ValueError, "ids in 0..10"),
    ("cdf", np.linspace(0, 1, 11, dtype=np.float32), TypeError, "cdf.astype(np.float64)"),
    ("cdf", np.linspace(0, 1, 10), ValueError, "n_items + 1 = 11"),
    ("cdf", np.linspace(0, 0.5, 11), ValueError, "exactly 1.0"),
    ("cdf", np.linspace(0.1, 1, 11), ValueError, "cdf[0] must be 0.0"),
    ("cdf", np.array([0, 0.5, 0.4] + [1.0] * 8), ValueError, "non-decreasing"),
    ("cdf", np.array([0, np.nan] + [1.0] * 9), ValueError, "finite"),
]


@pytest.mark.parametrize(("arg", "value", "exc", "fragment"), BAD_SAMPLER_INPUTS)
def test_sample_negatives_rejects_bad_input(arg, value, exc, fragment):
    with pytest.raises(exc, match=re.escape(fragment)):
        sample_negatives(**(_sampler_args() | {arg: value}))


def test_sample_negatives_rejects_row_with_no_allowed_item():
    seqs = np.array([[0, 1, 2], [1, 2, 0]], dtype=np.int32)
    exclude = np.array([[5, 3, 4], [3, 3, 0]], dtype=np.int32)
    with pytest.raises(ValueError, match="row 0 .* covers all 5 items"):
        sample_negatives(seqs, 5, 3, seed=0, exclude=exclude)


# ---------------------------------------------------------------- house rules


def test_no_kernel_hardcodes_fastmath():
    offenders = [p.name for p in KERNEL_DIR.glob("*.py") if p.name != "_jit.py" and "fastmath=" in p.read_text()]
    assert not offenders, f"set fastmath only in kernels/_jit.py: {offenders}"


def test_kernels_never_print():
    offenders = [p.name for p in KERNEL_DIR.glob("*.py") if re.search(r"\bprint\(", p.read_text())]
    assert not offenders, f"library code must not print: {offenders}"


def test_public_exports():
    assert set(kernels.__all__) == {"build_sequences", "count_windows", "sample_negatives", "popularity_cdf"}


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_kernels_import_nothing_from_toolkit():
    """kernels/ is a leaf: the package builds on it, so it keeps its own copy of the conventions."""
    offenders = {p.name: sorted(m for m in _imported_modules(p) if m.split(".")[0] == "toolkit")
                 for p in KERNEL_DIR.glob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_every_numba_kernel_lives_in_kernels():
    package = KERNEL_DIR.parent / "toolkit"
    offenders = [p.name for p in package.rglob("*.py")
                 if "numba" in _imported_modules(p) or "kernels._jit" in _imported_modules(p)]
    assert not offenders, f"move numba code into kernels/ (wrapper, @njit core, reference, property test): {offenders}"


# a core's reference in tests/reference.py, where it is not named after the core's wrapper
REFERENCE_OF = {"sample_negatives": "negative_probabilities"}


def test_every_kernel_core_has_a_reference():
    cores = [node.name for p in KERNEL_DIR.glob("*.py") for node in ast.parse(p.read_text()).body
             if isinstance(node, ast.FunctionDef) and re.fullmatch(r"_\w+_kernel", node.name)]
    assert len(cores) >= 5
    missing = [c for c in cores if not hasattr(ref, REFERENCE_OF.get(c[1:-7], c[1:-7]))]
    assert not missing, f"add a plain-Python reference to tests/reference.py for {missing}"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(-5, 40), max_size=200), st.integers(0, 3))
def test_stable_places_match_the_reference(values, slack):
    import reference
    from kernels.ordering import stable_places

    codes = np.array(values, np.int32)
    lo = int(codes.min(initial=0)) - slack  # any range that covers the codes
    span = int(codes.max(initial=0)) - lo + slack
    got = stable_places(codes, lo, span)
    assert got.dtype == np.int64
    assert np.array_equal(got, reference.stable_places(codes))
    sorted_codes = np.empty_like(codes)
    sorted_codes[got] = codes  # placed, the codes come out sorted, and each play once
    assert np.array_equal(sorted_codes, np.sort(codes)) and np.array_equal(np.sort(got), np.arange(len(codes)))


def test_stable_places_refuse_codes_outside_their_range():
    from kernels.ordering import stable_places

    with pytest.raises(ValueError, match="codes must lie in 0 .. 3"):
        stable_places(np.array([0, 4], np.int32), 0, 3)
    with pytest.raises(TypeError, match="dtype int32"):
        stable_places(np.array([0, 1], np.int64), 0, 3)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=120, unique=True), st.lists(st.integers(0, 2**64 - 1), max_size=40),
       st.data())
def test_hash_lookup_matches_the_reference(keys, strangers, data):
    """Rows of present hashes, EMPTY for absent ones, for any 64-bit values (also ones whose low
    bits collide, which force long probe runs)."""
    import reference
    from kernels.lookup import EMPTY, build_index, look_up

    if data.draw(st.booleans()):  # keys differing only in their top 12 bits: every one has home slot 0
        keys = sorted({(k % 4096) << 52 for k in keys})
    table = np.array(keys, np.uint64)
    slots, shared = build_index(table)
    assert shared == -1 and slots.dtype == np.int32
    assert sorted(slots[slots != EMPTY].tolist()) == list(range(len(keys)))  # every row in one slot
    present = data.draw(st.lists(st.sampled_from(keys), max_size=60)) if keys else []
    hashes = np.array(present + strangers, np.uint64)
    got = look_up(table, slots, hashes)
    assert got.dtype == np.int32
    assert np.array_equal(got, reference.look_up(table, hashes))


def test_hash_index_finds_a_shared_hash_and_refuses_a_foreign_index():
    from kernels.lookup import build_index, look_up

    assert build_index(np.array([5, 9, 5, 7], np.uint64))[1] == 2  # row 2 repeats row 0
    slots, _ = build_index(np.array([5, 9], np.uint64))
    with pytest.raises(ValueError, match="build it from this table"):
        look_up(np.arange(40, dtype=np.uint64), slots, np.array([5], np.uint64))
    with pytest.raises(TypeError, match="dtype uint64"):
        look_up(np.array([5, 9], np.uint64), slots, np.array([5], np.int64))
