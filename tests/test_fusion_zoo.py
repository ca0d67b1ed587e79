"""The rest of the fusion zoo: V3, V4a/b, V6, V6b (zoo_agent.py), V7a–d reducers (reduce.py),
V8 and V9 (linear.py).

Checks fusion.md §6.1 on every variant (padding invariance, padded queries zero, gradient to every
stream and none to padding), the reducers' own rules (padded tokens never selected, one token count
per batch, sizes conserved) and their selection on hand-made inputs, target-token survival on a
hand-made example, MACs against fusion.md §6.3, training through the fusion_model adapter, and the
baseline files.
"""
from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest
import torch

from conftest import make_random_split
from ravar_bench.adapters.fusion import FusionError, StreamTokens, build_fusion
from ravar_bench.adapters.fusion.reduce import (
    MCTF, PiToMe, TextTopK, ToMe, build_reducer, target_survival, target_tokens,
)
from ravar_bench.adapters.fusion.zoo_agent import chunk_index, grid_index, pool_by_index
from ravar_bench.adapters.registry import get_adapter
from ravar_bench.data.batches import BatchLoader, dataset_info
from ravar_bench.train import TrainConfig, fit

D = 16
LENGTHS = {"video": 9, "text": 5, "loc": 4}
BASELINES = Path(__file__).resolve().parent.parent / "baselines"

VARIANTS = [
    ("v3", {"agents": 4, "heads": 2}),
    ("v3", {"agents": 4, "pooling": "grid", "layers": 2}),  # 2-D positions → 2×2 cells
    ("v3", {"agents": 3, "pooling": "learned"}),
    ("v3", {"agents": 4, "heads": 2, "dwc": True, "agent_bias": True, "video_grid": (3, 3)}),  # Han-style terms
    ("v4", {"agents": 4, "heads": 2}),
    ("v4", {"agents": 3, "agent_source": "text", "broadcast_scale": 0.5}),
    ("v6", {"agents": 3, "heads": 2}),
    ("v6", {"agents": 2, "exchange": "all", "layers": 2}),
    ("v6b", {"agents": 4}),
    ("v6b", {"agents": 4, "pooling": "learned", "heads": 2}),
    ("v7", {"reducer": "tome", "keep": 0.5}),
    ("v7", {"reducer": "mctf", "keep": 0.6, "mctf_heads": 2, "inner": "v2"}),
    ("v7", {"reducer": "pitome", "keep": 0.5, "margin": 0.1, "inner": "v6b", "inner_params": {"agents": 4}}),
    ("v7", {"reducer": "topk", "keep": 0.3, "reduce_streams": ("video", "loc")}),
    ("v7", {"reducer": "tome", "prop_attn": False, "inner": "v4", "inner_params": {"agents": 4}}),
    ("v8", {"heads": 2}),
    ("v8", {"form": "cross", "layers": 2}),
    ("v9", {"latents": 5}),
    ("v9", {"latents": 4, "self_attn": True, "layers": 2}),
]
IDS = [f"{v}-{i}" for i, (v, _) in enumerate(VARIANTS)]


def grid_pos(b: int, n: int, side: int = 3) -> torch.Tensor:
    """(y, x) cell centres of a side × side grid, row-major, like the adapters' video positions."""
    ys, xs = torch.meshgrid((torch.arange(side) + 0.5) / side, (torch.arange(side) + 0.5) / side, indexing="ij")
    return torch.stack([ys, xs], -1).reshape(-1, 2)[:n].expand(b, -1, -1).clone()


def make_streams(lengths=LENGTHS, b=3, seed=0, p_pad=0.35) -> dict[str, StreamTokens]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for kind, n in lengths.items():
        x = torch.randn(b, n, D, generator=g)
        mask = torch.rand(b, n, generator=g) > p_pad
        mask[:, 0] = True
        if kind != "video":
            mask[-1, 1:] = False  # one sample with a single valid token
        pos = grid_pos(b, n) if kind == "video" else None
        out[kind] = StreamTokens(x, mask, pos=pos, kind=kind)
    return out


def with_garbage(streams, extra: int, seed: int) -> dict[str, StreamTokens]:
    """Same valid tokens; new values in the padded slots and ``extra`` more padded slots."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for kind, s in streams.items():
        p = s.pad_to(s.num_tokens + extra)
        noise = 50 * torch.randn(p.x.shape, generator=g)
        pos = None if p.pos is None else torch.where(p.mask[..., None], p.pos, torch.rand(p.pos.shape, generator=g))
        out[kind] = StreamTokens(torch.where(p.mask[..., None], p.x, noise), p.mask, pos=pos, kind=kind)
    return out


def build(variant, hparams, seed=0):
    torch.manual_seed(seed)
    return build_fusion(variant, D, **hparams).eval()


# ------------------------------------------------------------------------ interface rules
@pytest.mark.parametrize("variant,hparams", VARIANTS, ids=IDS)
def test_shapes_padded_queries_zero_and_padding_invariance(variant, hparams):
    f = build(variant, hparams)
    streams = make_streams()
    ref = f(with_garbage(streams, 0, seed=1))
    b, n_out = ref.mask.shape
    assert ref.tokens.shape == (3, n_out, D) and ref.pooled.shape == (3, D) and ref.mask.dtype == torch.bool
    assert torch.isfinite(ref.tokens).all() and torch.isfinite(ref.pooled).all()
    assert torch.count_nonzero(ref.tokens[~ref.mask]) == 0
    for extra in (0, 3):  # new garbage in the same slots, then also appended padding
        out = f(with_garbage(streams, extra, seed=2 + extra))
        torch.testing.assert_close(out.pooled, ref.pooled, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.tokens[out.mask], ref.tokens[ref.mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant,hparams", VARIANTS, ids=IDS)
def test_gradient_reaches_every_stream_and_no_padded_token(variant, hparams):
    streams = make_streams()
    for s in streams.values():
        s.x.requires_grad_(True)
    f = build(variant, hparams).train()
    f(streams).pooled.square().sum().backward()
    for kind, s in streams.items():
        assert s.x.grad[s.mask].abs().sum() > 0, f"no gradient reaches the {kind} stream"
        assert torch.count_nonzero(s.x.grad[~s.mask]) == 0, f"padded {kind} tokens receive gradient"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in f.parameters())


CROSS = [("v3", {}, False), ("v4", {}, True), ("v4", {"agent_source": "text"}, True), ("v6", {}, True),
         ("v6b", {}, True), ("v7", {"reducer": "tome", "inner": "v2"}, True), ("v8", {}, True),
         ("v8", {"form": "cross"}, True)]


@pytest.mark.parametrize("variant,hparams,crosses", CROSS, ids=[f"{v}-{i}" for i, (v, _, _) in enumerate(CROSS)])
def test_video_tokens_depend_on_other_streams_only_where_claimed(variant, hparams, crosses):
    f = build(variant, {"agents": 4, **hparams} if variant in ("v3", "v4", "v6", "v6b") else hparams)
    a, other = make_streams(seed=0), make_streams(seed=5)
    b = {"video": a["video"], "text": other["text"], "loc": other["loc"]}
    oa, ob = f(a), f(b)
    n_v = oa.aux["reduce"]["video"]["tokens_out"] if "reduce" in oa.aux else a["video"].num_tokens
    changed = not torch.allclose(oa.tokens[:, :n_v], ob.tokens[:, :n_v], atol=1e-6)
    assert changed == crosses
    if variant == "v3":  # the streams still meet in the pooled vector
        assert not torch.allclose(oa.pooled, ob.pooled)


def test_agent_pooling_ignores_padding_and_follows_the_grid():
    mask = torch.tensor([[True, False, True, True, False, True]])
    idx = chunk_index(mask, 2)  # 4 valid tokens → chunks of 2 by rank; padding goes to bucket 2
    assert idx.tolist() == [[0, 2, 0, 1, 2, 1]]
    x = torch.arange(6.0).view(1, 6, 1)
    agents, ok = pool_by_index(x, idx, mask.float(), 2)
    assert agents.flatten().tolist() == [1.0, 4.0] and ok.all()  # means of (0, 2) and (3, 5)
    empty, ok = pool_by_index(x, chunk_index(mask, 6), mask.float(), 6)
    assert ok.sum() == 4 and torch.count_nonzero(empty[~ok]) == 0  # more agents than tokens: masked
    pos = grid_pos(1, 9)
    cells = grid_index(pos, torch.ones(1, 9, dtype=torch.bool), 4, "t")
    assert cells.tolist() == [[0, 1, 1, 2, 3, 3, 2, 3, 3]]  # 3×3 grid into 2×2 cells (floor(2·pos))
    with pytest.raises(FusionError, match="agents = g\\^2"):
        grid_index(pos, torch.ones(1, 9, dtype=torch.bool), 5, "fusion v3")
    with pytest.raises(FusionError, match="needs positions on the 'video' stream"):
        s = make_streams()
        build("v3", {"agents": 4, "pooling": "grid"})({k: StreamTokens(v.x, v.mask, kind=k) for k, v in s.items()})


def test_v4b_agents_come_from_the_text():
    f = build("v4", {"agents": 2, "agent_source": "text"})
    a, other = make_streams(seed=0), make_streams(seed=5)
    out = f(a)
    assert out.aux["agents"].shape == (3, 2, D)
    # last sample has one valid word: one agent, the other is masked out of the broadcast
    assert out.aux["agent_mask"][-1].tolist() == [True, False]
    swapped = f({"video": a["video"], "text": other["text"], "loc": a["loc"]}).aux["agents"]
    assert not torch.allclose(swapped, out.aux["agents"])


def test_v6_exchange_reaches_other_streams_only_when_asked():
    a, other = make_streams(seed=0), make_streams(seed=5)
    b = {"video": other["video"], "text": a["text"], "loc": a["loc"]}
    n_v = LENGTHS["video"]
    for exchange, text_changes in (("video", False), ("all", True)):
        f = build("v6", {"agents": 2, "exchange": exchange})
        ta, tb = f(a).tokens[:, n_v:n_v + LENGTHS["text"]], f(b).tokens[:, n_v:n_v + LENGTHS["text"]]
        assert (not torch.allclose(ta, tb, atol=1e-6)) == text_changes


def test_hparam_errors_name_the_variant_and_key():
    with pytest.raises(FusionError, match="agent_source='text' needs a 'text' context stream"):
        build_fusion("v4", D, streams=("video", "loc"), agent_source="text")
    with pytest.raises(FusionError, match="v6b \\(shared_agents\\): hyper-parameter .pooling. must be one of"):
        build_fusion("v6b", D, pooling="grid")
    with pytest.raises(FusionError, match="keep must be in \\[0.5, 1\\]"):
        build_fusion("v7", D, reducer="tome", keep=0.3)
    with pytest.raises(FusionError, match="guide stream 'text' cannot also be reduced"):
        build_fusion("v7", D, reducer="mctf", reduce_streams=("video", "text"))
    with pytest.raises(FusionError, match="inner fusion 'v5' cannot run on reduced streams"):
        build_fusion("v7", D, inner="v5")
    with pytest.raises(FusionError, match="hyper-parameter 'reducer' must be one of"):
        build_fusion("v7", D, reducer="dtem")
    with pytest.raises(FusionError, match="v8 \\(linear_attn\\): hyper-parameter 'form' must be one of"):
        build_fusion("v8", D, form="causal")


# ----------------------------------------------------------------------------- reducers
REDUCERS = [("tome", {}), ("mctf", {"heads": 2}), ("pitome", {"margin": 0.2}), ("topk", {})]


def stream_with_sizes(b=4, n=11, seed=0) -> tuple[StreamTokens, StreamTokens]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(b, n, generator=g) > 0.3
    mask[0] = True  # one full row, others with different valid counts
    mask[1, 2:] = False
    size = 1 + torch.randint(0, 3, (b, n, 1), generator=g).float()
    video = StreamTokens(torch.randn(b, n, D, generator=g), mask, size=size, pos=torch.rand(b, n, 2, generator=g), kind="video")
    tmask = torch.ones(b, 4, dtype=torch.bool)
    tmask[2, 1:] = False
    return video, StreamTokens(torch.randn(b, 4, D, generator=g), tmask, kind="text")


@pytest.mark.parametrize("name,kw", REDUCERS, ids=[r for r, _ in REDUCERS])
def test_reducers_keep_one_count_never_select_padding_and_conserve_size(name, kw):
    keep = 0.5 if name != "topk" else 0.3
    red = build_reducer(name, D, keep, **kw).eval()
    video, text = stream_with_sizes()
    poisoned = StreamTokens(torch.where(video.mask[..., None], video.x, torch.full_like(video.x, 1e6)),
                            video.mask, video.size, video.pos, "video")
    out = red(poisoned, text)
    L = video.mask.sum(1)
    kept = torch.ceil(L * keep).long()
    r = (L - kept).minimum(L // 2 if name != "topk" else L)
    assert out.stream.num_tokens == video.num_tokens - int(r.min())  # one count for the batch
    assert out.stream.mask.sum(1).tolist() == (L - r).tolist()
    assert out.stream.x.abs().max() < 1e3  # no padded value reached an output token
    assert (out.dest[~video.mask] == -1).all()
    assert torch.count_nonzero(out.stream.x[~out.stream.mask]) == 0
    # every output token is the size-weighted mean of the inputs mapped to it (MCTF: attn×size)
    alive = out.dest >= 0
    for b in range(video.x.shape[0]):
        for slot in range(int(out.stream.mask[b].sum())):
            group = (out.dest[b] == slot).nonzero().flatten()
            assert len(group) >= 1 and video.mask[b, group].all()
            torch.testing.assert_close(out.stream.size[b, slot, 0], video.size[b, group, 0].sum())
            if name != "mctf":
                w = video.size[b, group]
                torch.testing.assert_close(out.stream.x[b, slot], (video.x[b, group] * w).sum(0) / w.sum(),
                                           atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(out.stream.pos[b, slot], (video.pos[b, group] * w).sum(0) / w.sum(),
                                           atol=1e-5, rtol=1e-5)
    if name != "topk":  # merging loses no token mass
        torch.testing.assert_close(out.stream.size[..., 0][out.stream.mask].sum(), video.size[..., 0][video.mask].sum())
    else:
        assert (alive.sum(1) == L - r).all()
    # a sample's result never depends on its padding (appended slots)
    padded = red(poisoned.pad_to(video.num_tokens + 4, fill=-3.0), text)
    for b in range(video.x.shape[0]):
        torch.testing.assert_close(padded.stream.x[b][padded.stream.mask[b]], out.stream.x[b][out.stream.mask[b]])
        assert padded.dest[b, : video.num_tokens].tolist() == out.dest[b].tolist()


def test_surviving_tokens_keep_their_order():
    """Slots are packed in input order, so untouched tokens (groups of one) keep their order."""
    video, text = stream_with_sizes()
    for name, kw in REDUCERS:
        out = build_reducer(name, D, 0.5, **kw)(video, text)
        for b in range(video.x.shape[0]):
            dest = out.dest[b].tolist()
            singles = [(i, s) for i, s in enumerate(dest) if s >= 0 and dest.count(s) == 1]
            assert [s for _, s in singles] == sorted(s for _, s in singles), name
            assert len(singles) >= 1


def test_tome_merges_the_most_similar_pair_by_hand():
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [-1.0, 0.0]]])
    s = StreamTokens(x, torch.ones(1, 4, dtype=torch.bool), size=torch.tensor([[[1.0], [3.0], [1.0], [1.0]]]),
                     kind="video")
    out = ToMe(2, keep=0.75)(s)  # r = 1; A = {0, 2}, B = {1, 3}: edge 0 → 1 has cosine ≈ 1
    assert out.dest.tolist() == [[0, 0, 1, 2]]
    torch.testing.assert_close(out.stream.x[0, 0], (x[0, 0] + 3 * x[0, 1]) / 4)
    assert out.stream.size[0, :, 0].tolist() == [4.0, 1.0, 1.0]


def _identity_mctf(d: int) -> MCTF:
    m = MCTF(d, keep=0.75)
    with torch.no_grad():
        for proj in (m.q, m.k):
            proj[1].weight.copy_(torch.eye(d))
            proj[1].bias.zero_()
    return m


def test_mctf_merges_the_pair_the_sentence_ignores():
    a = torch.tensor([3.0, -1.0, -1.0, -1.0])
    b = torch.tensor([-1.0, 3.0, -1.0, -1.0])
    video = StreamTokens(torch.stack([a, a, b, b])[None], torch.ones(1, 4, dtype=torch.bool), kind="video")
    m = _identity_mctf(4)
    # the sentence points at the a-pair: a is informative, so the b-pair merges (ToMe: a tie, first wins)
    out = m(video, StreamTokens(a[None, None] * 2, torch.ones(1, 1, dtype=torch.bool), kind="text"))
    assert out.dest.tolist() == [[0, 1, 2, 2]]
    out = m(video, StreamTokens(b[None, None] * 2, torch.ones(1, 1, dtype=torch.bool), kind="text"))
    assert out.dest.tolist() == [[0, 0, 1, 2]]
    assert ToMe(4, keep=0.75)(video).dest.tolist() == [[0, 0, 1, 2]]
    attn = m.informativeness(video, StreamTokens(a[None, None], torch.ones(1, 1, dtype=torch.bool), kind="text"))
    assert attn[0, 0] > 5 * attn[0, 2] and torch.allclose(attn.sum(), torch.tensor(1.0))


def test_pitome_protects_the_unique_token():
    base = torch.tensor([1.0, 0.0, 0.0])
    g = torch.Generator().manual_seed(0)
    cluster = base + 0.05 * torch.randn(4, 3, generator=g)
    unique = torch.tensor([[0.0, 0.0, 1.0]])
    x = torch.cat([cluster[:2], unique, cluster[2:]])[None]  # the unique token sits in the middle
    out = PiToMe(3, keep=0.6)(StreamTokens(x, torch.ones(1, 5, dtype=torch.bool), kind="video"))
    dest = out.dest[0].tolist()
    assert (torch.tensor(dest) == dest[2]).sum() == 1  # kept alone
    assert sorted(out.stream.size[0, :, 0].tolist()) == [1.0, 2.0, 2.0]  # the cluster merged in pairs


def test_topk_keeps_the_tokens_closest_to_the_words():
    x = torch.eye(4)[None] + 0.01
    text = StreamTokens(torch.tensor([[[0.0, 0.0, 1.0, 0.0], [9.0, 9.0, 9.0, 9.0]]]),
                        torch.tensor([[True, False]]), kind="text")  # the padded word must not count
    out = TextTopK(4, keep=0.25)(StreamTokens(x, torch.ones(1, 4, dtype=torch.bool), kind="video"), text)
    assert out.dest.tolist() == [[-1, -1, 0, -1]]


def test_target_tokens_and_survival_by_hand():
    # 2×2 grid, (y, x) centres; the GT box covers the left column (x < 0.5)
    pos = torch.tensor([[[0.25, 0.25], [0.25, 0.75], [0.75, 0.25], [0.75, 0.75]]])
    mask = torch.tensor([[True, True, True, True]])
    box = torch.tensor([[0.0, 0.0, 0.5, 1.0]])
    target = target_tokens(pos, mask, box)
    assert target.tolist() == [[True, False, True, False]]
    assert target_tokens(pos.flip(-1), mask, box, order="xy").tolist() == target.tolist()
    # token 0 merged with token 1 (a background token of size 3: purity 1/4); token 2 kept alone
    dest = torch.tensor([[0, 0, 1, 2]])
    size = torch.tensor([[[1.0], [3.0], [1.0], [1.0]]])
    res = target_survival(dest, mask, target, size)
    assert res["survival"].item() == 0.5 and res["untouched"].item() == 0.5 and res["dropped"].item() == 0.0
    # with equal sizes the merged group is 50 % target: survives at purity 0.5, not at 0.6
    assert target_survival(dest, mask, target)["survival"].item() == 1.0
    assert target_survival(dest, mask, target, purity=0.6)["survival"].item() == 0.5
    # dropped tokens do not survive; no target tokens gives NaN
    res = target_survival(torch.tensor([[-1, 0, 1, -1]]), mask, target)
    assert res["dropped"].item() == 0.5 and res["survival"].item() == 0.5
    assert math.isnan(target_survival(dest, mask, torch.zeros_like(target))["survival"].item())


def test_v7_aux_gives_survival_against_the_gt_box():
    f = build("v7", {"reducer": "topk", "keep": 0.5})
    streams = make_streams()
    out = f(streams)
    info = out.aux["reduce"]["video"]
    box = torch.tensor([[0.0, 0.0, 0.34, 0.34]]).expand(3, 4)  # the top-left cell of the 3×3 grid
    tgt = target_tokens(info["pos"], info["mask"], box)
    assert tgt.sum(1).tolist() == [1, 1, 1]
    res = target_survival(info["dest"], info["mask"], tgt, info["size"])
    kept = info["dest"][:, 0] >= 0
    assert res["survival"].tolist() == kept.float().tolist()


# --------------------------------------------------------------------------------- MACs
MACS = [("v3", {}), ("v4", {}), ("v4", {"agent_source": "text"}), ("v6", {}), ("v6", {"exchange": "all"}),
        ("v6b", {}), ("v7", {"reducer": "tome"}), ("v7", {"reducer": "mctf"}), ("v7", {"reducer": "pitome"}),
        ("v7", {"reducer": "topk", "keep": 0.25, "inner": "v2"}), ("v8", {}), ("v8", {"form": "cross"}), ("v9", {})]


@pytest.mark.parametrize("variant,hparams", MACS, ids=[f"{v}-{i}" for i, (v, _) in enumerate(MACS)])
def test_macs_grow_with_video_tokens(variant, hparams):
    f = build(variant, hparams)
    costs = [f.macs({"video": nv, "text": 12, "loc": 20}) for nv in (8, 32, 256, 2056, 8224)]
    assert all(isinstance(c, int) and c > 0 for c in costs)
    assert costs == sorted(costs) and len(set(costs)) == len(costs)


def test_macs_match_fusion_md_table():
    """fusion.md §6.3: d = 768, h = 12, n = 16, N_t = 32, N_l = 100, attention part only (GMACs)."""
    d, kw = 768, {"heads": 12, "mlp_ratio": 0.0}
    v6b = build_fusion("v6b", d, agents=16, **kw)
    v4 = build_fusion("v4", d, agents=16, **kw)
    v8 = build_fusion("v8", d, **kw)
    table = {32: (0.39, 0.20, 0.40), 256: (0.93, 0.47, 0.95), 2056: (5.27, 2.63, 5.38),
             4112: (10.2, 5.11, 10.4), 8224: (20.1, 10.1, 20.5)}
    for n_v, expected in table.items():
        shapes = {"video": n_v, "text": 32, "loc": 100}
        for f, g in zip((v6b, v4, v8), expected):
            got = f.macs(shapes) / 1e9
            assert abs(got - g) <= 0.012 * g + 0.005, (f.variant_id, n_v, got, g)
    # the reducer pays at many tokens: ToMe to half the video tokens then V1 beats V1 alone
    shapes = {"video": 8224, "text": 32, "loc": 100}
    v1 = build_fusion("v1", d, **kw)
    v7 = build_fusion("v7", d, reducer="tome", inner="v1", inner_params=kw)
    assert v7.macs(shapes) < 0.45 * v1.macs(shapes)
    assert ToMe(d).macs(8224) == 4112 * 4112 * d + 8224 * d and PiToMe(d).macs(8224) > 3 * ToMe(d).macs(8224)


# ------------------------------------------------------------ adapter and training
TRAIN = [("v3", {"heads": 2}), ("v4", {"heads": 2}), ("v4", {"agent_source": "text", "agents": 4}), ("v6", {"agents": 4}),
         ("v6b", {"agents": 4}), ("v7", {"reducer": "tome"}), ("v7", {"reducer": "mctf"}),
         ("v7", {"reducer": "pitome", "inner": "v2"}), ("v7", {"reducer": "topk", "inner": "v6b"}),
         ("v8", {}), ("v8", {"form": "cross"}), ("v9", {"latents": 4})]


@pytest.fixture(scope="module")
def split():
    return make_random_split(n_clips=4, per_clip=2, frames=2, size=64)


@pytest.mark.parametrize("variant,params", TRAIN, ids=[f"{v}-{i}" for i, (v, _) in enumerate(TRAIN)])
def test_fusion_model_trains_each_variant(split, variant, params):
    torch.manual_seed(0)
    m = get_adapter("fusion_model").build(dataset_info(split), {
        "fusion": variant, "fusion_params": params, "dim": 32, "hidden": 64, "freeze": True})
    assert m.fusion.variant_id == variant and m.frozen_encoder  # frozen-feature protocol: cached
    cfg = TrainConfig(epochs=30, batch_size=8, lr=5e-3, schedule="constant", weight_decay=0.0, select_metric="")
    hist = [h["loss"] for h in fit(m, split, None, cfg).history]
    assert hist[-1] < 0.85 * hist[0], (variant, hist)
    batch = next(iter(BatchLoader(split, m.inputs, 8)))
    s = m.streams(m.encode(batch), batch)
    assert s["video"].num_tokens == 16 and s["video"].pos.shape == (8, 16, 2)


# ------------------------------------------------------------------------ baseline files
MINE = ["fusion_v3", "fusion_v4", "fusion_v4b", "fusion_v5", "fusion_v6", "fusion_v6b", "fusion_v7", "fusion_v7a",
        "fusion_v7c", "fusion_v7d", "fusion_v8", "fusion_v9"]


@pytest.mark.parametrize("name", MINE)
def test_baseline_file(name, split):
    data = tomllib.loads((BASELINES / f"{name}.toml").read_text())
    head, params, tiny = data["baseline"], data["params"], data["params_tiny"]
    assert head["name"] == name and head["adapter"] == "fusion_model" and head["domain"] == "fusion"
    spec = get_adapter("fusion_model")
    spec.validate(params, where=f"{name}.toml: [params]")
    assert params["size"] == "base" and tiny["size"] == "person" and params["fusion"] == tiny["fusion"]
    for key in ("reducer", "agent_source", "form", "exchange", "pooling", "inner", "mode"):
        assert params["fusion_params"].get(key) == tiny["fusion_params"].get(key), key  # same row at both scales
    # the paper-scale fusion builds at d = 768 (BLIP-2 itself is not loaded here)
    fp = dict(params["fusion_params"])
    if params["fusion"] == "v5":
        fp["max_tokens"] = {"video": 32, "text": 32, "loc": 100}
    assert build_fusion(params["fusion"], params["dim"], **fp).d == 768
    m = spec.build(dataset_info(split), tiny, where=f"{name}.toml: [params_tiny]")
    batch = next(iter(BatchLoader(split, m.inputs, 4)))
    assert m(batch).scores.shape == (4, 80)


# ------------------------------------------------------------------- flop counter, benchmark
FC = [("v3", {}), ("v4", {}), ("v4", {"agent_source": "text"}), ("v6", {"exchange": "all"}), ("v6b", {}),
      ("v7", {"reducer": "tome"}), ("v7", {"reducer": "mctf"}), ("v7", {"reducer": "pitome"}),
      ("v7", {"reducer": "topk", "inner": "v2"}), ("v8", {}), ("v8", {"form": "cross"}), ("v9", {})]


@pytest.mark.parametrize("variant,hparams", FC, ids=[f"{v}-{i}" for i, (v, _) in enumerate(FC)])
def test_analytic_macs_agree_with_torch_flop_counter(variant, hparams):
    """FlopCounterMode counts matmuls and attention (2 flops per MAC), not the scatter-add
    pooling and merging that macs() adds (N·d each), hence a few per cent at d = 64."""
    from ravar_bench.efficiency import flop_counter  # counts CPU flash attention too

    d, n = 64, {"video": 96, "text": 12, "loc": 8}
    torch.manual_seed(0)
    f = build_fusion(variant, d, **hparams).eval()
    streams = {k: StreamTokens.dense(torch.randn(2, v, d), k) for k, v in n.items()}
    counter = flop_counter()
    with counter, torch.no_grad():
        f(streams)
    counted = counter.get_total_flops() / 2 / 2
    assert 0.95 * f.macs(n) <= counted <= f.macs(n), (counted, f.macs(n))


def load_bench(monkeypatch):
    import importlib.util
    import sys

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_fusion.py"
    spec = importlib.util.spec_from_file_location("bench_fusion", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_fusion", bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)
    return bench


def test_bench_fusion_script_runs_and_writes_the_curve(tmp_path, monkeypatch):
    import json

    bench = load_bench(monkeypatch)
    before = torch.get_num_threads()
    try:
        result = bench.main(["--nv", "16", "64", "--ratio-nv", "48", "--d", "32", "--heads", "2", "--agents", "4",
                             "--text", "8", "--loc", "4", "--variants", "V1", "V1-eager", "V3", "V4a", "V7a",
                             "--repeats", "2", "--budget", "5", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(before)
    points = result["points"]
    assert {(p.label, p.n_video) for p in points} >= {("V1", 48), ("V3", 48), ("V7a", 64)}
    assert all(p.status == "ok" and p.latency_ms > 0 and p.peak_mib > 0 and p.macs > 0 for p in points)
    assert ("V7a", 48) not in {(p.label, p.n_video) for p in points}  # the ratio size is for V1/V3/V4 only
    data = json.loads((tmp_path / "curve.json").read_text())
    assert set(data["meta"]["ratios"]) == {f"{b}/{a}" for b in ("V1", "V1-eager") for a in ("V3", "V4a")}
    assert (tmp_path / "curve.csv").read_text().count("\n") == len(points) + 1 and (tmp_path / "curve.png").stat().st_size
    # the eager backend materialises the attention matrix: more memory than SDPA at the same size
    at = {(p.label, p.n_video): p for p in points}
    assert at[("V1-eager", 64)].peak_mib > at[("V1", 64)].peak_mib


def test_bench_fusion_records_the_failure_boundary_instead_of_crashing(tmp_path, monkeypatch):
    bench = load_bench(monkeypatch)
    args = ["--nv", "16", "32", "64", "--ratio-nv", "0", "--d", "32", "--heads", "2", "--agents", "4", "--text", "8",
            "--loc", "4", "--repeats", "1", "--no-plot", "--no-flops", "--out", str(tmp_path)]
    before = torch.get_num_threads()
    real_call = bench.Runner.__call__

    def fail_beyond_16(self):  # an allocator that gives up above 16 video tokens
        if self.streams["video"].num_tokens > 16:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_call(self)

    try:
        slow = bench.main(args + ["--variants", "V3", "--budget", "1e-9"])["points"]
        monkeypatch.setattr(bench.Runner, "__call__", fail_beyond_16)
        oom = bench.main(args + ["--variants", "V1"])["points"]
    finally:
        torch.set_num_threads(before)
    assert [p.status for p in slow] == ["timeout", "timeout (predicted)", "timeout (predicted)"]
    assert [p.status for p in oom] == ["ok", "oom", "oom (predicted)"]
    assert "out of memory" in oom[1].note and oom[1].macs > 0 and oom[2].latency_ms is None
