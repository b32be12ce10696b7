"""The sequence model: a small transformer encoder over a listening session.

Conventions (see ``toolkit/schema.py``): ``seqs: int64[B, T]`` left-padded with ``PAD = 0``, real
tracks ``1..n_items``, cloze token ``MASK = n_items + 1``; ``fb: int64[B, T]`` is 1 for a skipped
play and 0 for a played track or padding.

- ``causal=True``: SASRec-like. The hidden state at column t sees plays ``<= t`` and predicts the
  track at t + 1 (``next_item`` / ``next_pos`` of the batch).
- ``causal=False``: BERT4Rec-like. Train on ``cloze_mask`` output; at prediction time put a MASK in
  the last column (``scorers.cloze_queries``) and read the hidden state there.

Positions are counted from the oldest real play of each row, not from column 0, so extra left
padding never changes the outputs at real positions. Every query position may attend to itself,
so rows and columns of pure padding stay finite (they attend only to themselves and are never
attended to by real positions).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolkit.config import ModelConfig
from toolkit.schema import PAD, mask_id


class SelfAttention(nn.Module):
    """Multi-head self-attention with a boolean "may attend" mask."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """x: (B, T, D); allowed: bool (B, 1, T, T), True where query t may attend to key s."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 x (B, T, D)
        # (B, T, D) -> (B, H, T, D / H)
        q, k, v = (z.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for z in (q, k, v))
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=drop)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + ffn(ln(x)) with GELU."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = cfg.ffn_mult * cfg.d_model
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.d_model, hidden),
            nn.GELU(),
            nn.Linear(hidden, cfg.d_model),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x), allowed)  # (B, T, D)
        x = x + self.ffn(self.ln_2(x))  # (B, T, D)
        return x


class SeqEncoder(nn.Module):
    """Item + position (+ optional feedback) embeddings, then ``n_layers`` blocks and a final LN;
    with ``encoder="gru"`` a stacked GRU replaces the blocks and the position embedding (GRU4Rec)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        gru = cfg.encoder == "gru"
        # rows: PAD, items 1..n_items, MASK; PAD row stays zero (padding_idx)
        self.item_emb = nn.Embedding(cfg.n_items + 2, cfg.d_model, padding_idx=PAD)
        self.artist_emb = nn.Embedding(cfg.artists + 1, cfg.d_model, padding_idx=0) if cfg.artists else None
        if cfg.artists:  # each track's artist (0: none, also PAD and MASK); set_artists fills it from the data
            self.register_buffer("item_artist", torch.zeros(cfg.n_items + 2, dtype=torch.int64))
        self.pos_emb = None if gru else nn.Embedding(cfg.max_len, cfg.d_model)
        self.fb_emb = nn.Embedding(2, cfg.d_model) if cfg.feedback_input else None
        # which block a play is in: the listener's history before the session, or the session itself
        self.seg_emb = nn.Embedding(2, cfg.d_model) if cfg.history else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(() if gru else (Block(cfg) for _ in range(cfg.n_layers)))
        self.gru = (nn.GRU(cfg.d_model, cfg.d_model, cfg.n_layers, batch_first=True,
                           dropout=cfg.dropout if cfg.n_layers > 1 else 0.0) if gru else None)
        self.ln_f = nn.LayerNorm(cfg.d_model)

    def forward(self, seqs: Tensor, fb: Tensor | None = None) -> Tensor:
        """seqs: int64 (B, T) left-padded; fb: int64 (B, T) in {0, 1}. Returns (B, T, D)."""
        B, T = seqs.shape
        if T > self.cfg.max_len:
            raise ValueError(f"rows have {T} columns but ModelConfig.max_len is {self.cfg.max_len}")
        valid = seqs != PAD  # (B, T)
        # count positions from the oldest real play, so left padding does not shift them
        pos = (valid.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, T)
        x = self.embed(seqs)  # (B, T, D)
        if self.pos_emb is not None:
            x = x + self.pos_emb(pos)
        if self.fb_emb is not None:
            if fb is None:
                raise ValueError("ModelConfig.feedback_input is set: pass fb (B, T) to forward")
            x = x + self.fb_emb(fb.long()) * valid.unsqueeze(-1)  # (B, T, D)
        if self.seg_emb is not None:
            in_session = torch.arange(T, device=seqs.device) >= T - (self.cfg.max_len - self.cfg.history)  # (T,)
            x = x + self.seg_emb(in_session.long()) * valid.unsqueeze(-1)  # (B, T, D)
        x = self.drop(x)
        if self.gru is not None:
            return self.ln_f(self._recur(x, valid))

        allowed = valid.unsqueeze(1).expand(B, T, T)  # (B, T_query, T_key): keys that are real
        if self.cfg.causal:
            allowed = allowed & torch.ones(T, T, dtype=torch.bool, device=seqs.device).tril()
        # attending to oneself keeps all-padding query rows finite (an empty softmax is NaN)
        allowed = allowed | torch.eye(T, dtype=torch.bool, device=seqs.device)
        allowed = allowed.unsqueeze(1)  # (B, 1, T, T), broadcast over heads

        for block in self.blocks:
            x = block(x, allowed)  # (B, T, D)
        return self.ln_f(x)  # (B, T, D)

    def embed(self, ids: Tensor) -> Tensor:
        """Input embeddings of track ids (any shape): the track's own, plus its artist's when the model has artists."""
        x = self.item_emb(ids)
        return x if self.artist_emb is None else x + self.artist_emb(self.item_artist[ids])

    def table(self) -> Tensor:
        """Every row's embedding, PAD and MASK included: (n_items + 2, D), ``embed`` of each id."""
        if self.artist_emb is None:
            return self.item_emb.weight
        return self.item_emb.weight + self.artist_emb(self.item_artist)  # the lookup keeps row 0 (no artist) at zero

    def _recur(self, x: Tensor, valid: Tensor) -> Tensor:
        """The GRU over each row's real plays only: a recurrent state would otherwise carry the left
        padding into the first real play.  Rows are rolled to right-aligned, packed, run, and rolled
        back; padding columns come out as zeros."""
        B, T, D = x.shape
        lengths = valid.sum(dim=1)  # (B,)
        cols = torch.arange(T, device=x.device)
        shift = (T - lengths).unsqueeze(1)  # (B, 1): left padding per row
        right = x.gather(1, ((cols + shift) % T).unsqueeze(-1).expand(B, T, D))  # real plays first
        packed = nn.utils.rnn.pack_padded_sequence(right, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, D)
        return out.gather(1, ((cols - shift) % T).unsqueeze(-1).expand(B, T, D))  # back to left padding


REPEAT_SCALE = 10.0  # the repeat head's parameters act at this scale (see SeqRec.repeat_weights)
# rule_rank's start, in REPEAT_SCALE units: place p in the rule's order adds a - b * log(1 + p), so
# the first place starts 12 score units up, 1.3 above the second and 4.4 above the tenth, far apart next
# to the untrained dot products (~0.1), and the network starts ranking as the rule does
RULE_PLACE_START = (1.2, 0.19)


def repeated_entries(items: Tensor) -> tuple[Tensor, Tensor]:
    """For lists of tracks ``items`` (..., L): ``same`` (..., L, L), entry i and entry j hold the same
    track, and ``repeated`` (..., L), an earlier entry of the list holds the track already (the
    successors and the windows count a track once, at its first entry, the latest one)."""
    j = torch.arange(items.shape[-1], device=items.device)
    same = items.unsqueeze(-1) == items.unsqueeze(-2)
    return same, (same & (j < j.unsqueeze(-1))).any(-1)


def rule_places(items: Tensor, available: Tensor, tiers: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Each candidate track's place in the ``repeat`` rule's order (scorers.RepeatScorer).

    items, available: (N, C) candidate tracks and which of them count; tiers: (N, C) tensors, what
    each entry adds to its track's score in each tier, the most significant first (the rule: earlier
    successors, replays, windows, transition counts).  A track's score in a tier is the sum over its
    available entries, and tracks compare tier by tier, so no sum has to fit in one float.  Returns
    ``place`` (N, C), int64: at each track's first available entry, how many distinct candidate
    tracks rank strictly above it (ties share a place); and ``first`` (N, C), bool, those entries."""
    same = (items.unsqueeze(-1) == items.unsqueeze(-2)) & available.unsqueeze(-1) & available.unsqueeze(-2)
    j = torch.arange(items.shape[-1], device=items.device)
    first = available & ~(same & (j < j.unsqueeze(-1))).any(-1)
    above = torch.zeros(same.shape, dtype=torch.bool, device=items.device)  # [n, i, j]: j ranks above i
    tied = first.unsqueeze(-2) & first.unsqueeze(-1)  # compare first entries only
    sums = same.to(tiers[0].dtype)  # (float matmul: TF32, if someone turned it on, would round these sums)
    for values in tiers:
        v = torch.where(available, values, torch.zeros((), dtype=values.dtype, device=values.device))
        score = (sums @ v.unsqueeze(-1)).squeeze(-1)  # (N, C): the track's sum in this tier
        a, b = score.unsqueeze(-2), score.unsqueeze(-1)  # [n, 0, j], [n, i, 0]
        above |= tied & (a > b)
        tied &= a == b
    return above.sum(-1), first


def own_key(users: Tensor | np.ndarray, current, nxt, n_items: int):
    """The int64 key of a (listener, track, next track) transition, in torch or numpy alike."""
    v = n_items + 1
    return (users * v + current) * v + nxt


class SeqRec(nn.Module):
    """Encoder + FC/GELU/LayerNorm head, scored against the tied item embedding table.

    Example: ``hidden = model(batch["seqs"], batch["fb"]); logits = model.scores(hidden)``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = SeqEncoder(cfg)
        self.head = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_model),
            nn.GELU(),
            nn.LayerNorm(cfg.d_model),
        )
        self.apply(self._init_weights)
        if cfg.repeat_head:  # starts at zero: the head adds nothing until training finds replays pay
            self.repeat_by_distance = nn.Parameter(torch.zeros(cfg.max_len))
            self.repeat_gate = nn.Linear(cfg.d_model, 1)
            nn.init.zeros_(self.repeat_gate.weight)
            nn.init.zeros_(self.repeat_gate.bias)
        if cfg.successors:
            self.successor_by_rank = nn.Parameter(torch.zeros(cfg.successors))
            self.successor_by_count = nn.Parameter(torch.zeros(cfg.successors))
            self.successor_gate = nn.Linear(cfg.d_model, 1)
            nn.init.zeros_(self.successor_gate.weight)
            nn.init.zeros_(self.successor_gate.bias)
        if cfg.successor_mute:  # starts near 0: the successors keep the network's track scores until training says
            self.successor_mute = nn.Parameter(torch.full((), -0.4))
        if cfg.window:  # per earlier play (latest first) and per step after its successor; see window_weights
            self.window_by_rank = nn.Parameter(torch.zeros(cfg.successors))
            self.window_by_offset = nn.Parameter(torch.zeros(cfg.window))
            self.window_gate = nn.Linear(cfg.d_model, 1)
            nn.init.zeros_(self.window_gate.weight)
            nn.init.zeros_(self.window_gate.bias)
        if cfg.follow:  # one weight per (follow code of the query, rank of the successor); see follow_codes
            self.successor_by_follow = nn.Parameter(torch.zeros(cfg.successors + 3, cfg.successors))
        if cfg.transitions:
            # the train rows' most frequent successors of every track (set_transitions); buffers, so
            # that a checkpoint scores alone, as a count baseline would
            self.register_buffer("trans_items", torch.zeros(cfg.n_items + 1, cfg.transitions, dtype=torch.int32))
            self.register_buffer("trans_counts", torch.zeros(cfg.n_items + 1, cfg.transitions))
            # each listener's own part of the counts, sorted keys (listener, track, next track) and counts;
            # their length depends on the data (see _load_from_state_dict)
            self.register_buffer("trans_own_keys", torch.zeros(0, dtype=torch.int64))
            self.register_buffer("trans_own_counts", torch.zeros(0))
            self.trans_by_count = nn.Parameter(torch.zeros(()))
            self.trans_by_share = nn.Parameter(torch.zeros(()))
            self.trans_gate = nn.Linear(cfg.d_model, 1)
            nn.init.zeros_(self.trans_gate.weight)
            nn.init.zeros_(self.trans_gate.bias)
        if cfg.rule_start:
            self._start_as_rule()
        if cfg.rule_rank:  # the rule's order from the start: see copy_terms and RULE_PLACE_START
            places = torch.arange(self.candidates(), dtype=torch.float32)
            self.rule_by_place = nn.Parameter(RULE_PLACE_START[0] - RULE_PLACE_START[1] * torch.log1p(places))
        if cfg.freeze_items:
            # the track vectors keep their random start (they still tell tracks apart in the input):
            # trained, they memorise the train sessions' transitions track by track, and the head
            # learns to trust them more than they deserve on a listener's later sessions
            self.encoder.item_emb.weight.requires_grad_(False)

    def candidates(self) -> int:
        """How many tracks the repeat head scores per query at most: the row's plays, the successors,
        their windows and the transitions (``copy_terms``)."""
        K = self.cfg.successors
        return self.cfg.max_len + K + K * self.cfg.window + self.cfg.transitions

    def _start_as_rule(self) -> None:
        """Start the repeat head where the ``repeat`` baseline ranks: earlier successors (the latest
        first) above the session's replays (the latest first) above the windows above the
        transition counts, each tier a few score units above the next, while the untrained dot
        products are near zero.  Training then corrects a ranking that is already the count rule's
        instead of building it from zero in the one or two epochs before the track embeddings overfit."""
        T, K = self.cfg.max_len, self.cfg.successors
        with torch.no_grad():  # in REPEAT_SCALE units: successors 8-8.5, replays 4-5, windows 2-2.5
            self.repeat_by_distance.copy_(0.4 + 0.1 * (1 - torch.arange(T) / max(T - 1, 1)))
            if K:
                self.successor_by_rank.copy_(0.8 + 0.05 * (1 - torch.arange(K) / max(K - 1, 1)))
            if self.cfg.window:
                self.window_by_rank.copy_(0.2 + 0.05 * (1 - torch.arange(K) / max(K - 1, 1)))
            if self.cfg.transitions:
                self.trans_by_share.fill_(0.1)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.cfg.init_std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.cfg.init_std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def forward(self, seqs: Tensor, fb: Tensor | None = None) -> Tensor:
        """seqs, fb: int64 (B, T). Returns the prediction vectors y_hat: (B, T, D)."""
        return self.head(self.encoder(seqs, fb))  # (B, T, D)

    def item_embeddings(self) -> Tensor:
        """The tied output table, rows PAD and 1..n_items: (n_items + 1, D). MASK is excluded."""
        return self.encoder.table()[: self.cfg.n_items + 1]

    def scores(self, hidden: Tensor) -> Tensor:
        """hidden: (..., D) -> catalogue scores (..., n_items + 1); the PAD column is -inf."""
        logits = hidden @ self.item_embeddings().T  # (..., V)
        logits[..., PAD] = float("-inf")  # in place is safe: matmul's backward ignores its output
        return logits

    def repeat_weights(self, hidden: Tensor, seqs: Tensor) -> Tensor:
        """The repeat head: what each play of the row adds to its track's score at each position.

        hidden: (B, T, D), seqs: int64 (B, T).  Returns (B, T, T): entry [b, t, j] is
        ``REPEAT_SCALE * (by_distance[t - j] + gate(hidden[b, t]))`` for a real play j at or before t, else 0.
        Listeners replay tracks (on the Spotify logs, scoring the session's own plays by recency
        beats every other count baseline several-fold), which a dot product with the track
        embeddings learns slowly; this copy term (in the spirit of RepeatNet, Ren et al. 2019)
        lets the model score a replay directly and learn how much recency matters in context.
        """
        T = seqs.shape[1]
        t = torch.arange(T, device=seqs.device)
        dist = t[:, None] - t[None, :]  # (T, T): how far back play j is from position t
        before = (dist >= 0) & (seqs != PAD)[:, None, :]  # (B, T, T)
        # REPEAT_SCALE: the dot-product scores span several units, and Adam moves a parameter by about
        # the learning rate per step, so unscaled weights took epochs to matter
        w = REPEAT_SCALE * (self.repeat_by_distance[dist.clamp(min=0)] + self.repeat_gate(hidden))  # (B, T, T)
        return torch.where(before, w, torch.zeros((), dtype=w.dtype, device=w.device))

    def successor_weights(self, hidden: Tensor, succ: Tensor, follow: Tensor | None = None) -> Tensor:
        """The successor term of the repeat head: what the earlier successors of the current track add.

        hidden: (B, T, D), succ: int64 (B, T, K), the tracks that followed the track at t in the
        listener's earlier plays, latest first (``history.row_successors``).  Returns (B, T, K): at the
        latest entry of each track, ``REPEAT_SCALE * (by_rank[k] + by_count[n - 1] + gate(hidden[b, t]))``
        with k its rank and n how often it is in the list; 0 at its older entries and at PAD.  With
        ``successor_sum``, every entry adds its own ``by_rank[k]`` (as the repeat baseline sums recency)
        and the rest comes once, at the latest entry.  With ``follow`` (B, T), the queries'
        ``follow_codes``, the latest entry also adds ``by_follow[code, k]``; with ``successor_mute`` it
        takes ``sigmoid(10 m)`` of the track's dot-product score off, so that the head's weights can
        order the successors without the network's scores.
        Listeners return to albums and playlists in their order, so "what came after this track last
        time" is often next, the more so the more often it came; a dot product with track embeddings
        would have to memorise that track by track.
        """
        same, newer = repeated_entries(succ)  # newer: not the track's latest entry
        count = same.sum(-1)  # (B, T, K): entries of the same track, itself included
        once = self.successor_by_count[count - 1] + self.successor_gate(hidden)  # (B, T, K)
        if follow is not None and self.cfg.follow:
            once = once + self.successor_by_follow[follow]
        if self.cfg.successor_mute:
            # take the share sigmoid(10 m) of each successor's dot-product score off again
            own = (hidden.unsqueeze(-2) * self.item_embeddings()[succ]).sum(-1)  # (B, T, K)
            once = once - torch.sigmoid(REPEAT_SCALE * self.successor_mute) * own / REPEAT_SCALE
        zero = torch.zeros((), dtype=once.dtype, device=once.device)
        if self.cfg.successor_sum:  # every entry its rank's weight; the rest once, at the latest entry
            w = torch.where(succ != PAD, self.successor_by_rank.to(once.dtype).expand_as(once), zero)
            return REPEAT_SCALE * (w + torch.where((succ != PAD) & ~newer, once, zero))
        w = REPEAT_SCALE * (self.successor_by_rank + once)
        return torch.where((succ != PAD) & ~newer, w, zero)

    def window_weights(self, hidden: Tensor, window: Tensor) -> Tensor:
        """The window term of the repeat head: the plays that came after the current track's earlier successors.

        hidden: (N, D), window: int64 (N, K * W), entry ``j * W + o`` the track ``o + 2`` plays after
        the j-th latest earlier play of the current track (``history.play_successors``).  Returns
        (N, K * W): every entry adds ``REPEAT_SCALE * (by_rank[j] + by_offset[o])``, so a track that
        came around the current one often and closely sums most, and a track's first entry also adds
        ``REPEAT_SCALE * gate(hidden)`` once; 0 at PAD.
        In shuffle mode, or after a skip, the next track is rarely the successor itself but often
        another track of the same album or playlist: ranked after the successors and the replays (and
        before the transition counts), they raised the ``repeat`` baseline's validation NDCG@10 on
        both Spotify logs by 0.002 (W = 2; benchmarks/README.md, "Windows after the successors").
        """
        K, W = self.cfg.successors, self.cfg.window
        per_entry = (self.window_by_rank.unsqueeze(1) + self.window_by_offset.unsqueeze(0)).reshape(K * W)  # (K W,)
        later = repeated_entries(window)[1]  # (N, KW): not the track's first entry
        real = window != PAD
        zero = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
        once = torch.where(real & ~later, self.window_gate(hidden).expand(-1, K * W), zero)  # (N, KW)
        return REPEAT_SCALE * torch.where(real, per_entry.to(hidden.dtype).expand_as(once) + once, zero)

    @staticmethod
    def follow_codes(seqs: Tensor, succ: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        """How the play at each query (rows, cols) followed the previous column's successors: int64 (N,).

        0: no real play in the previous column (the row's first play, or a hidden skip); 1: the
        previous play had no successors; 2: the play was none of them; 3 + k: it was the k-th latest
        (its first entry).  A listener going through an album or playlist as before keeps going: on
        the Spotify account data, after a play that was the latest successor of the previous one the
        next play is the latest successor again about 70 % of the time, after a play that was none of
        them under 5 %; the successor ranks alone cannot tell these queries apart.
        """
        prev = (cols - 1).clamp(min=0)
        before = succ[rows, prev]  # (N, K)
        current = seqs[rows, cols]  # (N,)
        same = (before == current.unsqueeze(1)) & (before != PAD)  # (N, K)
        code = torch.where(same.any(1), 3 + same.long().argmax(1),
                           torch.where((before != PAD).any(1), 2, 1))
        real_prev = (cols > 0) & (seqs[rows, prev] != PAD)
        return torch.where(real_prev, code, torch.zeros_like(code))

    def set_artists(self, item_artist: Tensor) -> None:
        """Each track's artist code, int64 (n_items + 2,): 1..artists, 0 for none (PAD and MASK too)."""
        if item_artist.shape != self.encoder.item_artist.shape or int(item_artist.max()) > self.cfg.artists:
            raise ValueError(f"item_artist must have shape {tuple(self.encoder.item_artist.shape)} and codes "
                             f"<= {self.cfg.artists}")
        self.encoder.item_artist.copy_(item_artist)

    def set_transitions(self, items: Tensor, counts: Tensor, own_keys: Tensor | None = None,
                        own_counts: Tensor | None = None) -> None:
        """Install the transition table: items int (n_items + 1, M), the tracks that most often followed
        each track in the train rows (PAD where fewer), counts float (n_items + 1, M), how often; and
        each listener's own share of the counts: sorted int64 keys ``own_key(listener, track, next)``
        (E,) with their counts (E,)."""
        self.trans_items.copy_(items)
        self.trans_counts.copy_(counts)
        if own_keys is not None:
            self.trans_own_keys = own_keys.to(self.trans_own_keys.device, torch.int64)
            self.trans_own_counts = own_counts.to(self.trans_own_counts.device, self.trans_counts.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the listener table is as long as the data it was counted from: take the checkpoint's length
        for name in ("trans_own_keys", "trans_own_counts"):
            saved = state_dict.get(prefix + name)
            if saved is not None and name in self._buffers:
                self._buffers[name] = torch.empty_like(saved, device=self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _own_counts(self, users: Tensor, current: Tensor, items: Tensor) -> Tensor:
        """(N, M): how often the query's listener (users (N,)) played ``current`` (N,) then ``items``
        (N, M) in the train rows."""
        keys, counts = self.trans_own_keys, self.trans_own_counts
        if not len(keys):
            return torch.zeros(items.shape, dtype=self.trans_counts.dtype, device=items.device)
        q = own_key(users.unsqueeze(1), current.unsqueeze(1), items, self.cfg.n_items)  # (N, M)
        at = torch.searchsorted(keys, q).clamp(max=len(keys) - 1)
        return torch.where(keys[at] == q, counts[at], torch.zeros((), dtype=counts.dtype, device=counts.device))

    def transition_weights(self, hidden: Tensor, current: Tensor, targets: Tensor | None = None,
                           users: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The transition term of the repeat head for N queries: hidden (N, D), current int64 (N,) the
        query's track.  Returns items (N, M), weights (N, M) and available (N, M): the current track's
        most frequent successors, each weighing ``REPEAT_SCALE * (by_count * log(1 + n) + by_share * n /
        total + gate(hidden))`` with n its count and total that of all M.

        ``users`` (N,), the queries' listeners: their own transitions are left out, in training and in
        evaluation alike, so the term says what the OTHER listeners played after this track.  Counted
        over the whole train split, a listener's own transitions would include, for a training query,
        the listener's later sessions: in training they then named the next track far more often than
        they can on new sessions (on both Spotify logs this cost a quarter to a third of the validation NDCG@10);
        the listener's own past reaches the model through the successor term, which reads only plays
        before the query.  Without ``users`` (a session of its own), ``targets`` (N,) in training
        removes the one count the query's own play put there.

        A first-order transition count ranks the catalogue's tail better than dot products with track
        embeddings that a few epochs on a long-tailed catalogue cannot train (on the Spotify logs the
        network ranked the tracks outside the session and its successors below ``markov``); as a
        learned term the model keeps what the counts know and learns when to trust them.
        """
        items, n = self.transition_counts(current, targets, users)
        return (items, *self._weigh_transitions(hidden, items, n))

    def transition_counts(self, current: Tensor, targets: Tensor | None = None,
                          users: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The current track's (N,) most frequent successors, items int64 (N, M), and how often the
        other listeners (``users``), or the other rows (``targets``), played them after it, (N, M) >= 0;
        see ``transition_weights``."""
        items = self.trans_items[current].long()  # (N, M)
        n = self.trans_counts[current]  # (N, M)
        if users is not None:
            n = n - self._own_counts(users, current, items)
        elif targets is not None:
            n = n - (items == targets.unsqueeze(1)).to(n.dtype)
        return items, n.clamp(min=0)

    def _weigh_transitions(self, hidden: Tensor, items: Tensor, n: Tensor) -> tuple[Tensor, Tensor]:
        available = (items != PAD) & (n > 0)
        share = n / n.sum(1, keepdim=True).clamp(min=1)
        w = REPEAT_SCALE * (self.trans_by_count * torch.log1p(n) + self.trans_by_share * share + self.trans_gate(hidden))
        return torch.where(available, w, torch.zeros((), dtype=w.dtype, device=w.device)), available

    def copy_terms(self, hidden: Tensor, seqs: Tensor, succ: Tensor | None, rows: Tensor,
                   cols: Tensor, targets: Tensor | None = None,
                   users: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Every track the repeat head scores for the queries at (rows, cols), with its weight.

        hidden: (B, T, D), seqs: (B, T), succ: (B, T, K) or None, targets: (N,) in training and users:
        (B,) the rows' listeners, or None (see ``transition_weights``).  Returns items (N, C), weights
        (N, C) and available (N, C), C = T (+ K (+ K W)) (+ M): the row's plays (available up to the
        query column), the query's successors and their windows (available where not PAD), then the
        current track's train transitions.  A track may appear more than once; its repeat term is the
        sum of its weights (``repeat_bonus``).

        With ``rule_rank``, each track's first entry also adds ``REPEAT_SCALE * by_place[p]``, p its
        place among the candidates in the ``repeat`` rule's order (``rule_places``; the transition tier
        leaves the listener's own counts out, as the transition term does).  The head then starts where
        the rule ranks, to the place, and training learns how far to trust each place in context.
        """
        items = seqs[rows]  # (N, T)
        T = seqs.shape[1]
        weights = self.repeat_weights(hidden, seqs)[rows, cols]  # (N, T)
        available = (torch.arange(T, device=seqs.device)[None, :] <= cols[:, None]) & (items != PAD)
        # with rule_rank, what each part adds to the repeat rule's score by tier (rule_places); else nothing
        rank = self.cfg.rule_rank
        # a play's position among the row's real plays
        parts = [(items, weights, available, {1: torch.cumsum(available, 1).float()} if rank else {})]
        if succ is not None and self.cfg.successors:
            K = self.cfg.successors  # succ holds the successors, then their windows (K * window)
            latest = torch.arange(K, 0, -1, dtype=torch.float32, device=seqs.device)  # K - k for the k-th latest
            s_items = succ[rows, cols, :K]  # (N, K)
            follow = self.follow_codes(seqs, succ[..., :K], rows, cols).unsqueeze(1) if self.cfg.follow else None
            s_weights = self.successor_weights(hidden[rows, cols].unsqueeze(1), s_items.unsqueeze(1), follow).squeeze(1)
            parts.append((s_items, s_weights, s_items != PAD, {0: latest.expand(s_items.shape)} if rank else {}))
            if self.cfg.window:
                w_items = succ[rows, cols, K:]  # (N, K * window)
                w_rank = {2: latest.repeat_interleave(self.cfg.window).expand(w_items.shape)} if rank else {}
                parts.append((w_items, self.window_weights(hidden[rows, cols], w_items), w_items != PAD, w_rank))
        if self.cfg.transitions:
            t_items, n = self.transition_counts(seqs[rows, cols], targets, None if users is None else users[rows])
            t_weights, t_available = self._weigh_transitions(hidden[rows, cols], t_items, n)
            # squashed below any window entry, as the rule does
            counts = {3: (n / (n.max(1, keepdim=True).values + 1)).float()} if rank else {}
            parts.append((t_items, t_weights, t_available, counts))
        items, weights, available = (torch.cat(p, 1) for p in zip(*(part[:3] for part in parts)))
        if rank:
            # float32 whatever the autocast: the sums are small integers (and the squashed counts), exact there
            tiers = [torch.cat([part[3].get(tier, torch.zeros(part[0].shape, device=seqs.device))
                                for part in parts], 1) for tier in range(4)]
            place, first = rule_places(items, available, tiers)
            bonus = REPEAT_SCALE * self.rule_by_place[place.clamp(max=len(self.rule_by_place) - 1)]
            weights = weights + torch.where(first, bonus.to(weights.dtype), torch.zeros((), dtype=weights.dtype,
                                                                                       device=weights.device))
        return items, weights, available

    def repeat_bonus(self, weights: Tensor, row_items: Tensor, candidates: Tensor) -> Tensor:
        """weights: (N, T) repeat weights of N queries over their rows' plays, row_items: (N, T) those
        plays, candidates: (N, K) track ids.  Returns (N, K): the repeat term of each candidate, the sum
        of the weights of the plays of that track."""
        same = candidates.unsqueeze(-1) == row_items.unsqueeze(1)  # (N, K, T)
        return (same * weights.unsqueeze(1)).sum(-1)

    def scores_with_repeats(self, hidden: Tensor, weights: Tensor, row_items: Tensor) -> Tensor:
        """Catalogue scores of N queries, hidden (N, D), with the repeat term of their rows' plays
        (weights, row_items: (N, T)) added: (N, n_items + 1)."""
        return self.scores(hidden).scatter_add(1, row_items, weights.to(hidden.dtype))


def cloze_mask(
    seqs: Tensor, n_items: int, p: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Hide each real play with probability ``p`` behind the MASK token (BERT4Rec training input).

    Parameters
    ----------
    seqs : int64 (B, T), left-padded with PAD; padding is never masked.
    n_items : catalogue size; MASK = n_items + 1.
    p : masking probability in (0, 1).
    generator : torch.Generator on ``seqs.device`` (for reproducible masks), or None.

    Returns
    -------
    masked_seqs : int64 (B, T), MASK where hidden, ``seqs`` elsewhere.
    targets : int64 (B, T), the hidden track where masked, PAD elsewhere.

    A row may end up with no masked position. With ``feedback_input`` on, callers should zero ``fb``
    where ``targets != PAD``: otherwise the skip label of the hidden track leaks into the input.
    """
    u = torch.rand(seqs.shape, generator=generator, device=seqs.device)  # (B, T)
    chosen = (u < p) & (seqs != PAD)
    masked_seqs = seqs.masked_fill(chosen, mask_id(n_items))
    targets = torch.where(chosen, seqs, torch.full_like(seqs, PAD))
    return masked_seqs, targets

