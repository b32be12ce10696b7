"""Shapes, masking properties and trainability of toolkit/model.py on tiny models."""

from __future__ import annotations

import json
import math
from dataclasses import FrozenInstanceError, asdict, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch

from toolkit.config import ModelConfig
from toolkit.losses import full_cross_entropy
from toolkit.model import REPEAT_SCALE, RULE_PLACE_START, SeqRec, cloze_mask, rule_places
from toolkit.schema import PAD, mask_id

N_ITEMS = 20
CFG = ModelConfig(n_items=N_ITEMS, max_len=8, d_model=16, n_heads=2, n_layers=2, dropout=0.2)


def make_model(cfg: ModelConfig = CFG, seed: int = 0) -> SeqRec:
    torch.manual_seed(seed)
    return SeqRec(cfg).eval()


SEQS = torch.tensor([[0, 0, 3, 7, 1, 9], [4, 5, 6, 7, 8, 2], [0, 0, 0, 0, 0, 11]])
FB = torch.tensor([[0, 0, 1, 0, 0, 1], [0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1]])


def test_config_is_frozen_and_json_serialisable():
    assert json.loads(json.dumps(asdict(CFG))) == asdict(CFG)
    with pytest.raises(FrozenInstanceError):
        CFG.d_model = 32  # type: ignore[misc]
    with pytest.raises(ValueError, match="n_heads"):
        ModelConfig(n_items=5, d_model=10, n_heads=3)


def test_shapes_and_pad_column():
    model = make_model()
    hidden = model(SEQS)
    assert hidden.shape == (3, 6, 16)
    scores = model.scores(hidden)
    assert scores.shape == (3, 6, N_ITEMS + 1)
    assert torch.isneginf(scores[..., PAD]).all()
    assert torch.isfinite(scores[..., 1:]).all()
    emb = model.item_embeddings()
    assert emb.shape == (N_ITEMS + 1, 16)
    assert torch.all(emb[PAD] == 0)
    assert torch.allclose(scores[..., 1:], hidden @ emb[1:].T)


GRU = replace(CFG, encoder="gru")


@pytest.mark.parametrize("encoder", ["transformer", "gru"])
@pytest.mark.parametrize("feedback_input", [False, True])
def test_causal_outputs_ignore_the_future(feedback_input, encoder):
    model = make_model(replace(CFG, feedback_input=feedback_input, encoder=encoder))
    base = model(SEQS, FB)
    for t in range(SEQS.shape[1] - 1):
        changed, changed_fb = SEQS.clone(), FB.clone()
        changed[:, t + 1 :] = (changed[:, t + 1 :] % N_ITEMS) + 1
        changed_fb[:, t + 1 :] = 1 - changed_fb[:, t + 1 :]
        out = model(changed, changed_fb)
        assert torch.allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-6)
        assert not torch.allclose(out[1, t + 1], base[1, t + 1], atol=1e-6)


def test_bidirectional_outputs_see_the_future():
    model = make_model(replace(CFG, causal=False))
    changed = SEQS.clone()
    changed[1, 5] = 12
    assert not torch.allclose(model(changed)[1, 0], model(SEQS)[1, 0], atol=1e-6)


@pytest.mark.parametrize("causal,encoder", [(True, "transformer"), (False, "transformer"), (True, "gru")])
def test_left_padding_does_not_change_real_positions(causal, encoder):
    model = make_model(replace(CFG, causal=causal, feedback_input=True, encoder=encoder))
    extra = 2
    padded = torch.cat([torch.zeros(3, extra, dtype=torch.long), SEQS], dim=1)
    padded_fb = torch.cat([torch.zeros(3, extra, dtype=torch.long), FB], dim=1)
    out, out_padded = model(SEQS, FB), model(padded, padded_fb)[:, extra:]
    real = SEQS != PAD
    assert torch.allclose(out_padded[real], out[real], atol=1e-5)


@pytest.mark.parametrize("causal,encoder", [(True, "transformer"), (False, "transformer"), (True, "gru")])
def test_all_pad_row_is_finite_in_train_and_eval(causal, encoder):
    model = make_model(replace(CFG, causal=causal, encoder=encoder))
    seqs = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 2]])
    for mode in (model.train, model.eval):
        mode()
        hidden = model(seqs)
        assert torch.isfinite(hidden).all()
        loss = full_cross_entropy(model.scores(hidden), torch.tensor([[0, 0, 2, 3], [0, 0, 0, 0]]))
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.zero_grad()


def test_feedback_input_changes_outputs():
    model = make_model(replace(CFG, feedback_input=True))
    flipped = FB.clone()
    flipped[0, 3] = 1
    out, out_flipped = model(SEQS, FB), model(SEQS, flipped)
    assert not torch.allclose(out[0, 3:], out_flipped[0, 3:], atol=1e-6)
    assert torch.allclose(out[1:], out_flipped[1:])  # other rows untouched
    with pytest.raises(ValueError, match="fb"):
        model(SEQS)
    # without the flag, fb is ignored
    plain = make_model()
    assert torch.equal(plain(SEQS, FB), plain(SEQS, flipped))


def test_rows_longer_than_max_len_are_rejected():
    with pytest.raises(ValueError, match="max_len"):
        make_model()(torch.ones(1, CFG.max_len + 1, dtype=torch.long))


def test_cloze_mask():
    seqs = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    gen = torch.Generator().manual_seed(0)
    masked, targets = cloze_mask(seqs, N_ITEMS, 0.5, gen)
    hidden = masked == mask_id(N_ITEMS)
    assert hidden.any() and not hidden[seqs == PAD].any()
    assert torch.equal(targets[hidden], seqs[hidden])
    assert torch.all(targets[~hidden] == PAD) and torch.equal(masked[~hidden], seqs[~hidden])
    again, _ = cloze_mask(seqs, N_ITEMS, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(masked, again)


@pytest.mark.parametrize("causal,encoder", [(True, "transformer"), (False, "transformer"), (True, "gru")])
def test_overfits_one_tiny_batch(causal, encoder):
    torch.manual_seed(0)
    cfg = ModelConfig(n_items=12, max_len=6, d_model=32, n_heads=2, n_layers=1, dropout=0.0,
                      causal=causal, encoder=encoder)
    model = SeqRec(cfg).train()
    # left-padded sessions with distinct first tracks, so every prefix determines its next track
    seqs = torch.tensor([[0, 1, 5, 9, 2, 7], [3, 8, 4, 11, 6, 12], [0, 0, 10, 2, 8, 1]])
    next_item = torch.cat([seqs[:, 1:], torch.zeros(3, 1, dtype=torch.long)], dim=1)
    next_item[seqs == PAD] = PAD
    if causal:
        inputs, targets = seqs, next_item
    else:  # learn to fill every position in (a fixed cloze batch keeps the test deterministic)
        inputs, targets = cloze_mask(seqs, cfg.n_items, 0.5, torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = full_cross_entropy(model.scores(model(inputs)), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_gru_reads_each_row_alone_and_in_order():
    """The recurrent state at a play depends on the real plays before it, in order, and nothing else."""
    model = make_model(GRU)
    one = model(SEQS[:1])  # row 0 alone, with its own padding
    assert torch.allclose(model(SEQS)[0], one[0], atol=1e-6)
    swapped = SEQS[:1].clone()
    swapped[0, [2, 3]] = swapped[0, [3, 2]]  # same plays, another order
    assert not torch.allclose(model(swapped)[0, 3], one[0, 3], atol=1e-6)
    with pytest.raises(ValueError, match="encoder"):
        ModelConfig(n_items=5, encoder="gru", causal=False)


def _repeat_model() -> SeqRec:
    model = make_model(replace(CFG, repeat_head=True, dropout=0.0)).eval()
    with torch.no_grad():
        # d back -> d + 1, in units of the head's scale
        model.repeat_by_distance.copy_(torch.arange(1, CFG.max_len + 1, dtype=torch.float32) / REPEAT_SCALE)
    return model


def test_repeat_head_weights_count_only_real_plays_at_or_before_each_position():
    model = _repeat_model()
    seqs = torch.tensor([[PAD, 3, 5, 3]])
    hidden = torch.zeros(1, 4, CFG.d_model)  # the gate starts at zero, so only the distance weights count
    w = model.repeat_weights(hidden, seqs)[0]  # (T, T)
    assert w.tolist() == [[0, 0, 0, 0], [0, 1, 0, 0], [0, 2, 1, 0], [0, 3, 2, 1]]
    # at position 3 track 3 was played 2 and 0 steps back: 1 + 3; track 5 one step back: 2
    bonus = model.repeat_bonus(w[3:4], seqs, torch.tensor([[3, 5, 7]]))
    assert bonus.tolist() == [[4.0, 2.0, 0.0]]
    scores = model.scores_with_repeats(torch.zeros(1, CFG.d_model), w[3:4], seqs)
    assert scores[0, 3] == 4.0 and scores[0, 5] == 2.0 and scores[0, 7] == 0.0 and scores[0, PAD] == float("-inf")


def test_repeat_head_needs_a_causal_model_and_starts_at_zero():
    with pytest.raises(ValueError):
        ModelConfig(n_items=5, causal=False, repeat_head=True)
    model = make_model(replace(CFG, repeat_head=True))
    seqs = torch.tensor([[PAD, 3, 5, 3]])
    hidden = model(seqs)
    assert torch.count_nonzero(model.repeat_weights(hidden, seqs)) == 0  # adds nothing before training


def test_successor_term_scores_what_followed_the_current_track_before():
    model = make_model(replace(CFG, repeat_head=True, successors=3, dropout=0.0)).eval()
    with torch.no_grad():
        model.successor_by_rank.copy_(torch.tensor([3.0, 2.0, 1.0]) / REPEAT_SCALE)  # latest counts most
        model.successor_by_count.copy_(torch.tensor([0.0, 0.5, 5.0]) / REPEAT_SCALE)  # and the more often
    seqs = torch.tensor([[PAD, 3, 5, 3]])
    succ = torch.zeros(1, 4, 3, dtype=torch.long)
    succ[0, 3] = torch.tensor([5, 6, 5])  # before, 3 was followed by 5 (latest), 6, then 5 again
    hidden = torch.zeros(1, 4, CFG.d_model)  # gates at zero, repeat weights at zero: only successors count
    # 5 is in the list twice: rank 0 (3) + count 2 (0.5) at its latest entry, nothing at its older one
    assert model.successor_weights(hidden, succ)[0, 3].tolist() == pytest.approx([3.5, 2.0, 0.0])
    assert model.successor_weights(hidden, succ)[0, 2].tolist() == [0.0, 0.0, 0.0]  # no successor: no weight
    items, weights, available = model.copy_terms(hidden, seqs, succ, torch.tensor([0]), torch.tensor([3]))
    assert items.tolist() == [[PAD, 3, 5, 3, 5, 6, 5]] and available.tolist() == [[False] + [True] * 6]
    scores = model.scores_with_repeats(torch.zeros(1, CFG.d_model), weights * available, items)
    assert scores[0, 5].item() == pytest.approx(3.5) and scores[0, 6] == 2.0 and scores[0, 3] == 0.0 and scores[0, 7] == 0.0
    with pytest.raises(ValueError, match="successors"):
        ModelConfig(n_items=5, successors=2)


def test_window_term_sums_what_came_around_the_current_track_before():
    model = make_model(replace(CFG, repeat_head=True, successors=2, window=2, dropout=0.0)).eval()
    with torch.no_grad():
        model.window_by_rank.copy_(torch.tensor([2.0, 1.0]) / REPEAT_SCALE)  # the latest earlier play counts most
        model.window_by_offset.copy_(torch.tensor([0.5, 0.0]) / REPEAT_SCALE)  # and the nearer play after it
        model.window_gate.bias.fill_(0.25 / REPEAT_SCALE)  # once per track
    seqs = torch.tensor([[PAD, 3, 5, 3]])
    succ = torch.zeros(1, 4, 2 + 2 * 2, dtype=torch.long)
    # at the last 3: successors 5 (latest) and 6; after the latest 5 came 7 then 8, after the 6 came 7
    succ[0, 3] = torch.tensor([5, 6, 7, 8, 7, PAD])
    hidden = torch.zeros(1, 4, CFG.d_model)
    w = model.window_weights(hidden[0, 3:4], succ[0, 3:4, 2:])[0]
    # 7: rank 0 offset 0 (2.5) + the gate once (0.25), then rank 1 offset 0 (1.5); 8: rank 0 offset 1 (2) + gate
    assert w.tolist() == pytest.approx([2.75, 2.25, 1.5, 0.0])
    items, weights, available = model.copy_terms(hidden, seqs, succ, torch.tensor([0]), torch.tensor([3]))
    assert items.tolist() == [[PAD, 3, 5, 3, 5, 6, 7, 8, 7, PAD]]
    scores = model.scores_with_repeats(torch.zeros(1, CFG.d_model), weights * available, items)
    assert scores[0, 7].item() == pytest.approx(4.25) and scores[0, 8].item() == pytest.approx(2.25)
    assert scores[0, 5].item() == 0.0  # successor weights at zero: the window adds only to its own tracks
    fresh = make_model(replace(CFG, repeat_head=True, successors=2, window=2))
    assert torch.count_nonzero(fresh.window_weights(hidden[0, 3:4], succ[0, 3:4, 2:])) == 0  # starts at zero
    with pytest.raises(ValueError, match="window"):
        ModelConfig(n_items=5, repeat_head=True, window=2)


def test_a_rule_start_ranks_as_the_repeat_baseline_before_any_training():
    cfg = replace(CFG, repeat_head=True, successors=2, window=1, rule_start=True, dropout=0.0)
    model = make_model(cfg).eval()
    seqs = torch.tensor([[PAD, 3, 5, 4]])
    succ = torch.zeros(1, 4, 2 + 2, dtype=torch.long)
    succ[0, 3] = torch.tensor([6, 7, 8, PAD])  # successors 6 (latest), 7; after the 6 came 8
    hidden = torch.zeros(1, 4, CFG.d_model)
    items, weights, available = model.copy_terms(hidden, seqs, succ, torch.tensor([0]), torch.tensor([3]))
    scores = model.scores_with_repeats(torch.zeros(1, CFG.d_model), weights * available, items)[0]
    # successors (the latest first) above the session's plays (the latest first) above the window
    assert scores[6] > scores[7] > scores[4] > scores[5] > scores[3] > scores[8] > scores[2] == 0.0
    with pytest.raises(ValueError, match="rule_start"):
        ModelConfig(n_items=5, rule_start=True)


def test_rule_places_compare_tier_by_tier_and_count_each_track_once():
    items = torch.tensor([[5, 7, 5, 9, 3, PAD], [4, 6, 4, 6, PAD, PAD]])
    available = torch.tensor([[True, True, True, True, False, False], [True, True, True, True, False, False]])
    successors = torch.tensor([[0.0, 2.0, 0.0, 0.0, 9.0, 0.0], [0.0] * 6])  # 3 would lead, but is not available
    replays = torch.tensor([[1.0, 0.0, 3.0, 2.0, 0.0, 0.0], [1.0, 2.0, 2.0, 1.0, 0.0, 0.0]])
    place, first = rule_places(items, available, [successors, replays])
    # row 0: 7 (a successor) above 5 (replays 1 + 3) above 9 (2); row 1: 4 and 6 tie at 3
    assert first.tolist() == [[True, True, False, True, False, False], [True, True, False, False, False, False]]
    assert place[0, [1, 0, 3]].tolist() == [0, 1, 2]
    assert place[1, [0, 1]].tolist() == [0, 0]


def test_rule_rank_starts_at_the_repeat_baselines_order_to_the_place():
    cfg = replace(CFG, repeat_head=True, successors=2, window=1, rule_rank=True, dropout=0.0)
    model = make_model(cfg).eval()
    seqs = torch.tensor([[PAD, 3, 5, 4, 5]])
    succ = torch.zeros(1, 5, 2 + 2, dtype=torch.long)
    succ[0, 4] = torch.tensor([6, 4, 8, 3])  # before, 5 was followed by 6 (latest) and by 4; after them came 8 and 3
    hidden = torch.zeros(1, 5, CFG.d_model)  # no dot products: the head alone
    items, weights, available = model.copy_terms(hidden, seqs, succ, torch.tensor([0]), torch.tensor([4]))
    scores = model.scores_with_repeats(torch.zeros(1, CFG.d_model), weights * available, items)[0]
    # the rule: successors 6 (2) and 4 (1); replays 5 (positions 2 + 4) and 3 (1); the window's 8 last
    a, b = RULE_PLACE_START
    for place, track in enumerate([6, 4, 5, 3, 8]):
        assert scores[track].item() == pytest.approx(REPEAT_SCALE * (a - b * math.log1p(place)), abs=1e-5)
    assert scores[[1, 2, 7]].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="rule_rank"):
        ModelConfig(n_items=5, rule_rank=True)


def test_frozen_track_embeddings_stay_at_their_start_while_the_rest_trains():
    model = make_model(replace(CFG, freeze_items=True, dropout=0.0)).train()
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)  # as train.py builds it
    for _ in range(3):
        hidden = model(SEQS, FB)
        loss = full_cross_entropy(model.scores(hidden[:, :-1]).reshape(-1, N_ITEMS + 1), SEQS[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, start[name])}
    assert "encoder.item_emb.weight" not in moved and not model.encoder.item_emb.weight.requires_grad
    assert {"encoder.pos_emb.weight", "head.0.weight"} <= moved


def test_summed_successor_weights_add_every_entrys_rank_as_the_repeat_baseline_does():
    model = make_model(replace(CFG, repeat_head=True, successors=3, successor_sum=True, dropout=0.0)).eval()
    with torch.no_grad():
        model.successor_by_rank.copy_(torch.tensor([3.0, 2.0, 1.0]) / REPEAT_SCALE)
        model.successor_by_count.copy_(torch.tensor([0.0, 0.5, 5.0]) / REPEAT_SCALE)
    seqs = torch.tensor([[PAD, 3, 5, 3]])
    succ = torch.zeros(1, 4, 3, dtype=torch.long)
    succ[0, 3] = torch.tensor([5, 6, 5])
    hidden = torch.zeros(1, 4, CFG.d_model)
    # 5: rank 0 (3) + its count of 2 (0.5) at the latest entry, and rank 2 (1) at the older one
    assert model.successor_weights(hidden, succ)[0, 3].tolist() == pytest.approx([3.5, 2.0, 1.0])
    assert model.successor_weights(hidden, succ)[0, 2].tolist() == [0.0, 0.0, 0.0]
    items, weights, available = model.copy_terms(hidden, seqs, succ, torch.tensor([0]), torch.tensor([3]))
    scores = model.scores_with_repeats(torch.zeros(1, CFG.d_model), weights * available, items)
    assert scores[0, 5].item() == pytest.approx(4.5) and scores[0, 6].item() == pytest.approx(2.0)
    # a track that followed twice lately outranks the single latest one, as in the repeat baseline
    succ[0, 3] = torch.tensor([7, 6, 6])
    _, weights, available = model.copy_terms(hidden, seqs, succ, torch.tensor([0]), torch.tensor([3]))
    scores = model.scores_with_repeats(torch.zeros(1, CFG.d_model), weights * available, _)
    assert scores[0, 6] > scores[0, 7]


def test_muted_successors_lose_a_learned_share_of_their_dot_product_score():
    model = make_model(replace(CFG, repeat_head=True, successors=2, successor_mute=True, dropout=0.0)).eval()
    seqs = torch.tensor([[PAD, 3, 4]])
    succ = torch.zeros(1, 3, 2, dtype=torch.long)
    succ[0, 2] = torch.tensor([5, 6])
    hidden = torch.randn(1, 3, CFG.d_model)
    dot = model.scores(hidden[0, 2:3])[0]  # the network's own score of every track
    with torch.no_grad():
        model.successor_mute.fill_(100.0)  # share sigmoid(1000) = 1: the whole dot product comes off
    items, weights, available = model.copy_terms(hidden, seqs, succ, torch.tensor([0]), torch.tensor([2]))
    scores = model.scores_with_repeats(hidden[0, 2:3], weights * available, items)[0]
    assert weights[0, 3:].tolist() == pytest.approx((-dot[[5, 6]]).tolist(), abs=1e-5)
    assert scores[5].item() == pytest.approx(0.0, abs=1e-5) and scores[6].item() == pytest.approx(0.0, abs=1e-5)
    assert scores[7].item() == pytest.approx(dot[7].item(), abs=1e-6)  # other tracks keep their score
    with torch.no_grad():
        model.successor_mute.fill_(-100.0)  # share 0: as without the setting
    _, weights, _ = model.copy_terms(hidden, seqs, succ, torch.tensor([0]), torch.tensor([2]))
    assert weights[0, 3:].abs().max().item() < 1e-6


def test_follow_codes_by_hand():
    seqs = torch.tensor([[PAD, 3, 5, 6, 9, PAD, 4]])
    succ = torch.zeros(1, 7, 3, dtype=torch.long)
    succ[0, 1] = torch.tensor([6, 5, 5])  # before, 3 was followed by 6, then 5 (twice)
    succ[0, 2] = torch.tensor([6, PAD, PAD])  # and 5 by 6
    succ[0, 3] = torch.tensor([8, 2, PAD])  # 6 by 8 and 2, never by 9
    rows, cols = torch.zeros(7, dtype=torch.long), torch.arange(7)
    codes = SeqRec.follow_codes(seqs, succ, rows, cols).tolist()
    # col 0: padding before it; col 1: padding before; col 2: 5 was 3's successor of rank 1 (its first entry);
    # col 3: 6 was 5's latest; col 4: 9 was none of 6's; col 5: 9 had no successors; col 6: padding before
    assert codes == [0, 0, 3 + 1, 3 + 0, 2, 1, 0]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_follow_codes_match_a_plain_reference(data):
    B, T, K = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 7)), data.draw(st.integers(1, 4))
    ids = st.integers(0, 5)  # 0 is PAD: padding and short successor lists both occur
    seqs = torch.tensor(data.draw(st.lists(st.lists(ids, min_size=T, max_size=T), min_size=B, max_size=B)))
    succ = torch.tensor(data.draw(st.lists(st.lists(st.lists(ids, min_size=K, max_size=K), min_size=T, max_size=T),
                                           min_size=B, max_size=B)))
    rows, cols = torch.arange(B).repeat_interleave(T), torch.arange(T).repeat(B)
    got = SeqRec.follow_codes(seqs, succ, rows, cols).tolist()
    want = []
    for b, t in zip(rows.tolist(), cols.tolist()):
        if t == 0 or seqs[b, t - 1] == PAD:
            want.append(0)
            continue
        before = [x for x in succ[b, t - 1].tolist()]
        hits = [k for k, x in enumerate(before) if x != PAD and x == seqs[b, t]]
        want.append(3 + hits[0] if hits else (2 if any(x != PAD for x in before) else 1))
    assert got == want


def test_follow_weights_successors_by_how_the_current_play_followed():
    model = make_model(replace(CFG, repeat_head=True, successors=2, follow=True, dropout=0.0)).eval()
    assert torch.count_nonzero(model.successor_by_follow) == 0  # adds nothing before training
    with torch.no_grad():
        model.successor_by_follow[3 + 0].copy_(torch.tensor([4.0, 0.0]) / REPEAT_SCALE)  # kept following: trust rank 0
        model.successor_by_follow[2].copy_(torch.tensor([-1.0, -1.0]) / REPEAT_SCALE)  # broke off: trust none
    seqs = torch.tensor([[PAD, 3, 5], [PAD, 3, 7]])
    succ = torch.zeros(2, 3, 2, dtype=torch.long)
    succ[:, 1] = torch.tensor([5, 6])  # 3 was followed by 5, then 6
    succ[:, 2] = torch.tensor([[8, 9], [8, 9]])
    hidden = torch.zeros(2, 3, CFG.d_model)
    items, weights, available = model.copy_terms(hidden, seqs, succ, torch.tensor([0, 1]), torch.tensor([2, 2]))
    assert items[:, 3:].tolist() == [[8, 9], [8, 9]]
    assert weights[0, 3:].tolist() == pytest.approx([4.0, 0.0]) and weights[1, 3:].tolist() == pytest.approx([-1.0, -1.0])
    with pytest.raises(ValueError, match="follow"):
        ModelConfig(n_items=5, repeat_head=True, follow=True)


def test_history_columns_get_their_own_segment_and_a_narrow_row_is_all_session():
    model = make_model(replace(CFG, history=2, dropout=0.0)).eval()  # rows of 8: 2 history + 6 session
    with torch.no_grad():
        model.encoder.seg_emb.weight.copy_(torch.randn_like(model.encoder.seg_emb.weight))
        session = torch.tensor([[PAD, PAD, 3, 5, 3, 6]])
        wide = model(torch.cat([torch.tensor([[PAD, PAD]]), session], dim=1))  # an empty history
        narrow = model(session)  # no history columns at all (e.g. a session typed in by hand)
        as_history = model(torch.tensor([[3, 5, PAD, PAD, PAD, PAD, 3, 6]]))
        as_session = model(torch.tensor([[PAD, PAD, PAD, PAD, 3, 5, 3, 6]]))
    # an empty history changes nothing at the session's columns
    assert torch.allclose(wide[0, 2:], narrow[0], atol=1e-6)
    # the same four plays at the same positions: two of them read as the listener's history, or as the session
    assert not torch.allclose(as_history[0, -1], as_session[0, -1], atol=1e-4)
    with pytest.raises(ValueError, match="history"):
        ModelConfig(n_items=5, max_len=4, history=4)


def test_transition_term_scores_the_current_tracks_frequent_successors_and_leaves_the_target_out():
    model = make_model(replace(CFG, repeat_head=True, transitions=3, dropout=0.0)).eval()
    table = torch.zeros(N_ITEMS + 1, 3, dtype=torch.int32)
    counts = torch.zeros(N_ITEMS + 1, 3)
    table[7] = torch.tensor([5, 9, 2], dtype=torch.int32)
    counts[7] = torch.tensor([3.0, 1.0, 0.0])  # 2 is padding of the table: count 0, never available
    model.set_transitions(table, counts)
    with torch.no_grad():
        model.trans_by_count.fill_(1.0 / REPEAT_SCALE)
    hidden = torch.zeros(2, CFG.d_model)  # gate at zero: the weight is log(1 + count)
    items, w, ok = model.transition_weights(hidden, torch.tensor([7, 4]))
    assert items[0].tolist() == [5, 9, 2] and ok.tolist() == [[True, True, False], [False, False, False]]
    assert w[0].tolist() == pytest.approx([math.log(4.0), math.log(2.0), 0.0]) and w[1].tolist() == [0.0, 0.0, 0.0]
    # in training the target's own play is not evidence for itself: 5 loses one count, 9 its only one
    _, w, ok = model.transition_weights(hidden[:1].expand(2, -1), torch.tensor([7, 7]), targets=torch.tensor([5, 9]))
    assert w[0].tolist() == pytest.approx([math.log(3.0), math.log(2.0), 0.0])
    assert ok[1].tolist() == [True, False, False] and w[1, 1] == 0.0
    # a listener's own transitions are left out: listener 2 played 7 -> 5 twice, so 5 counts 1 for them
    from toolkit.model import own_key
    model.set_transitions(table, counts, torch.tensor([own_key(2, 7, 5, N_ITEMS), own_key(3, 7, 9, N_ITEMS)]),
                          torch.tensor([2.0, 1.0]))
    _, w, ok = model.transition_weights(hidden[:1].expand(3, -1), torch.tensor([7, 7, 7]), users=torch.tensor([2, 3, 0]))
    assert w[:, :2].flatten().tolist() == pytest.approx([math.log(2.0), math.log(2.0), math.log(4.0), 0.0,
                                                         math.log(4.0), math.log(2.0)])
    assert ok[1].tolist() == [True, False, False]
    # the term reaches the catalogue scores through the copy candidates, after the row's plays
    seqs = torch.tensor([[0, 0, 3, 7]])
    h = model(seqs)
    items, weights, available = model.copy_terms(h, seqs, None, torch.tensor([0]), torch.tensor([3]))
    assert items.shape == (1, 4 + 3) and items[0, 4:].tolist() == [5, 9, 2]
    scores = model.scores_with_repeats(h[0, 3:4], weights * available, items)
    plain = model.scores(h[0, 3:4])
    assert (scores - plain)[0, 5].item() == pytest.approx(math.log(4.0), abs=1e-5)
    assert (scores - plain)[0, 2].item() == pytest.approx(0.0, abs=1e-6)
    # a checkpoint carries the table, so a loaded model scores alone
    again = SeqRec(model.cfg)
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.trans_items, model.trans_items) and torch.equal(again.trans_counts, model.trans_counts)
    assert torch.equal(again.trans_own_keys, model.trans_own_keys) and len(again.trans_own_keys) == 2
    with pytest.raises(ValueError, match="transitions"):
        ModelConfig(n_items=5, transitions=2)


def test_artist_embeddings_add_to_every_tracks_own_and_tracks_of_one_artist_share_them():
    cfg = replace(CFG, artists=3)
    model = make_model(cfg)
    artist = torch.zeros(N_ITEMS + 2, dtype=torch.int64)
    artist[1:6], artist[6:9] = 1, 2  # tracks 1-5 by artist 1, 6-8 by artist 2, the rest unknown (0)
    model.set_artists(artist)
    enc = model.encoder
    ids = torch.arange(N_ITEMS + 2)
    by_hand = enc.item_emb.weight + torch.stack([enc.artist_emb.weight[a] for a in artist.tolist()])
    torch.testing.assert_close(enc.embed(ids), by_hand)
    torch.testing.assert_close(enc.table(), by_hand)
    torch.testing.assert_close(model.item_embeddings(), by_hand[: N_ITEMS + 1])
    assert torch.equal(enc.embed(ids)[PAD], torch.zeros(cfg.d_model))  # PAD has no track and no artist row
    # track 1's score alone moves artist 1's row, which every track of that artist reads, and no other
    (torch.randn(cfg.d_model) * model.item_embeddings()[1]).sum().backward()
    grad = enc.artist_emb.weight.grad
    assert grad[1].abs().sum() > 0 and grad[[0, 2, 3]].abs().sum() == 0
    enc.artist_emb.weight.grad = None  # the full softmax reaches every artist, never the "no artist" row
    full_cross_entropy(torch.randn(1, cfg.d_model) @ model.item_embeddings().T, torch.tensor([1])).backward()
    assert enc.artist_emb.weight.grad[0].abs().sum() == 0 and enc.artist_emb.weight.grad[2].abs().sum() > 0
    with pytest.raises(ValueError, match="item_artist"):
        model.set_artists(torch.full((N_ITEMS + 2,), 4))  # a code beyond the artists the model has
    assert not hasattr(make_model().encoder, "item_artist") and make_model().encoder.artist_emb is None
