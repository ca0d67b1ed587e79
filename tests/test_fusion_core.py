"""The fusion interface and the core variants (V0, Concatenation, V1, V2, V2b, MBT bottleneck, V5).

Checks the rules of fusion.md §6.1 (masks, padded queries, padding invariance), gradient flow,
cross-stream information paths, MAC formulas against the numbers in fusion.md §5.6 / §6.3, and
RefAtomNet's released math recomputed by hand in plain torch.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ravar_bench.adapters.fusion import FusionError, StreamTokens, build_fusion, fusion_spec, list_fusions
from ravar_bench.adapters.fusion.agent import AgentAttention, AgentBlock

D = 16
LENGTHS = {"video": 6, "text": 5, "loc": 4}
MAX = {"video": 6, "text": 9, "loc": 7}

# (id, hparams) of every variant in a mask-honouring configuration
MASKED_VARIANTS = [
    ("v0", {}), ("v0", {"average": True}), ("concat", {}), ("v1", {"heads": 2, "layers": 2}),
    ("v2", {"heads": 2}), ("v2b", {"heads": 2}), ("bottleneck", {"heads": 2}),
    ("v5", {"mode": "corrected", "tokens": 6, "max_tokens": MAX}),
    ("v5", {"mode": "corrected", "tokens": 5, "max_tokens": MAX, "heads": 2, "agents": 3}),
    ("v5", {"mode": "corrected", "tokens": 6, "max_tokens": MAX, "caaf": False}),
    ("v5", {"mode": "corrected", "tokens": 6, "max_tokens": MAX, "catf": False}),
    ("v5", {"mode": "corrected", "tokens": None}),  # streams of equal length, masks kept per token
    ("v5", {"mode": "log_guided", "tokens": 6, "max_tokens": MAX, "heads": 2}),
    ("v5", {"mode": "log_guided", "tokens": None, "guide_scale": 2.0}),
]
IDS = [f"{v}-{'-'.join(f'{k}={x}' for k, x in p.items() if k != 'max_tokens')}" for v, p in MASKED_VARIANTS]


def make_streams(lengths=LENGTHS, b=3, seed=0, dtype=torch.float32, p_pad=0.35) -> dict[str, StreamTokens]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for kind, n in lengths.items():
        x = torch.randn(b, n, D, generator=g, dtype=dtype)
        mask = torch.rand(b, n, generator=g) > p_pad
        mask[:, 0] = True
        if kind != "video":
            mask[-1, 1:] = False  # one sample with a single valid token
        out[kind] = StreamTokens(x, mask, kind=kind)
    return out


def with_garbage(streams: dict[str, StreamTokens], extra: int, seed: int) -> dict[str, StreamTokens]:
    """Same valid tokens; different values in the padded slots and ``extra`` more padded slots."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for kind, s in streams.items():
        padded = s.pad_to(s.num_tokens + extra)
        noise = 50 * torch.randn(padded.x.shape, generator=g, dtype=s.x.dtype)
        x = torch.where(padded.mask[..., None], padded.x, noise)
        out[kind] = StreamTokens(x, padded.mask, kind=kind)
    return out


def build(variant: str, hparams: dict, seed: int = 0):
    torch.manual_seed(seed)
    return build_fusion(variant, D, **hparams).eval()


def video_tokens(fusion, streams) -> torch.Tensor:
    out = fusion(streams)
    if "outputs" in out.aux:
        return out.aux["outputs"]["video"]
    return out.tokens[:, : streams["video"].num_tokens]  # video is the first stream everywhere


# ------------------------------------------------------------------------------ registry
def test_registry_resolves_ids_names_aliases_and_rejects_bad_hparams():
    assert {s.id for s in list_fusions()} >= {"v0", "v1", "v2", "v2b", "v5", "concat", "bottleneck"}
    for key, vid in [("V1", "v1"), ("concat_sa", "v1"), ("addition", "v0"), ("Concatenation", "concat"),
                     ("mbt", "bottleneck"), ("refatomnet", "v5"), ("caaf", "v5")]:
        assert fusion_spec(key).id == vid
    with pytest.raises(FusionError, match="unknown fusion variant 'v99'.*v1 \\(concat_sa\\)"):
        build_fusion("v99", D)
    with pytest.raises(FusionError, match="v1 \\(concat_sa\\): unknown hyper-parameter 'layer'"):
        build_fusion("v1", D, layer=2)
    with pytest.raises(FusionError, match="hyper-parameter 'mode' must be one of"):
        build_fusion("v5", D, mode="released", max_tokens=MAX)
    with pytest.raises(FusionError, match="heads=1"):
        build_fusion("v5", D, mode="as_released", heads=2, max_tokens=MAX)
    with pytest.raises(FusionError, match="max_tokens\\['loc'\\]"):
        build_fusion("v5", D, mode="corrected", max_tokens={"video": 6, "text": 9})
    with pytest.raises(FusionError, match="divisible"):
        build_fusion("v1", D, heads=3)


def test_streams_are_checked_by_name_width_and_batch():
    f = build("v2", {})
    s = make_streams()
    with pytest.raises(FusionError, match="missing stream"):
        f({"video": s["video"], "text": s["text"]})
    bad = dict(s, text=StreamTokens(torch.zeros(3, 5, D + 1), s["text"].mask, kind="text"))
    with pytest.raises(FusionError, match="stream 'text' has width 17"):
        f(bad)
    with pytest.raises(FusionError, match="kind must be one of"):
        StreamTokens(torch.zeros(1, 2, D), torch.ones(1, 2, dtype=torch.bool), kind="audio")
    two = build("v2", {"streams": ("video", "text")})
    assert two({"video": s["video"], "text": s["text"]}).pooled.shape == (3, D)


# --------------------------------------------------------------------- interface rules
@pytest.mark.parametrize("variant,hparams", MASKED_VARIANTS, ids=IDS)
def test_shapes_and_padded_queries_output_zero(variant, hparams):
    streams = make_streams()
    if hparams.get("tokens", 0) is None:
        streams = make_streams({k: 5 for k in LENGTHS})
    out = build(variant, hparams)(streams)
    b, n_out = out.mask.shape
    assert b == 3 and out.tokens.shape == (3, n_out, D) and out.pooled.shape == (3, D)
    assert out.mask.dtype == torch.bool and torch.isfinite(out.pooled).all()
    assert torch.count_nonzero(out.tokens[~out.mask]) == 0


@pytest.mark.parametrize("variant,hparams", MASKED_VARIANTS, ids=IDS)
def test_padding_invariance(variant, hparams):
    equal = hparams.get("tokens", 0) is None
    streams = make_streams({k: 5 for k in LENGTHS} if equal else LENGTHS)
    f = build(variant, hparams)
    ref = f(with_garbage(streams, 0, seed=1))
    for extra in (0, 2):  # new garbage in the old padded slots, then also appended padding
        out = f(with_garbage(streams, extra, seed=2 + extra))
        torch.testing.assert_close(out.pooled, ref.pooled, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.tokens[out.mask], ref.tokens[ref.mask], atol=1e-5, rtol=1e-5)


def test_padding_invariance_holds_with_token_sizes():
    streams = make_streams()
    g = torch.Generator().manual_seed(3)
    sized = {k: StreamTokens(s.x, s.mask, size=1 + 3 * torch.rand(*s.mask.shape, 1, generator=g), kind=k)
             for k, s in streams.items()}
    f = build("v1", {"heads": 2})
    a = f(sized)
    padded = {k: s.pad_to(s.num_tokens + 3, fill=7.0) for k, s in sized.items()}
    b = f(padded)
    torch.testing.assert_close(a.pooled, b.pooled, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a.pooled, f(streams).pooled, atol=1e-4)  # sizes do act


@pytest.mark.parametrize("variant,hparams", MASKED_VARIANTS, ids=IDS)
def test_gradient_reaches_every_stream_and_no_padded_token(variant, hparams):
    equal = hparams.get("tokens", 0) is None
    streams = make_streams({k: 5 for k in LENGTHS} if equal else LENGTHS)
    for s in streams.values():
        s.x.requires_grad_(True)
    f = build(variant, hparams).train()
    f(streams).pooled.square().sum().backward()
    for kind, s in streams.items():
        assert s.x.grad[s.mask].abs().sum() > 0, f"no gradient reaches the {kind} stream"
        assert torch.count_nonzero(s.x.grad[~s.mask]) == 0, f"padded {kind} tokens receive gradient"
    trained = [n for n, p in f.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert trained or not list(f.parameters()), "no fusion parameter receives gradient"


# ------------------------------------------------------------------ cross-stream paths
CROSS = [  # (variant, hparams, does the video output depend on the text/loc streams?)
    ("v0", {}, False), ("concat", {}, False), ("v1", {}, True), ("v2", {}, True), ("v2b", {}, True),
    ("bottleneck", {"layers": 2}, True), ("bottleneck", {"layers": 1}, False),
    ("v5", {"mode": "as_released", "tokens": 6, "max_tokens": MAX}, True),
    ("v5", {"mode": "corrected", "tokens": 6, "max_tokens": MAX}, True),
    ("v5", {"mode": "corrected", "tokens": 6, "max_tokens": MAX, "caaf": False}, True),
    ("v5", {"mode": "corrected", "tokens": 6, "max_tokens": MAX, "catf": False}, True),
    ("v5", {"mode": "corrected", "tokens": 6, "max_tokens": MAX, "caaf": False, "catf": False}, False),
    ("v5", {"mode": "rescale_only", "tokens": 6, "max_tokens": MAX}, False),
    ("v5", {"mode": "log_guided", "tokens": 6, "max_tokens": MAX, "catf": False}, True),
]


@pytest.mark.parametrize("variant,hparams,crosses", CROSS, ids=[f"{v}-{i}" for i, (v, _, _) in enumerate(CROSS)])
def test_video_output_depends_on_other_streams_only_where_claimed(variant, hparams, crosses):
    f = build(variant, hparams)
    a = make_streams(seed=0)
    other = make_streams(seed=5)
    b = {"video": a["video"], "text": other["text"], "loc": other["loc"]}
    changed = not torch.allclose(video_tokens(f, a), video_tokens(f, b), atol=1e-6)
    assert changed == crosses


def test_rescale_only_keeps_the_video_block_blind_but_not_the_aggregate():
    f = build("v5", {"mode": "rescale_only", "tokens": 6, "max_tokens": MAX, "keep_maps": True})
    a = make_streams(seed=0)
    other = make_streams(seed=5)
    oa = f(a)
    ob = f({"video": a["video"], "text": other["text"], "loc": other["loc"]})
    for key in ("agents", "agents_pre", "agent_values", "maps", "outputs"):
        torch.testing.assert_close(oa.aux[key]["video"], ob.aux[key]["video"], atol=0, rtol=0)
    torch.testing.assert_close(oa.aux["fused_map"], ob.aux["fused_map"], atol=0, rtol=0)
    assert not torch.allclose(oa.pooled, ob.pooled)  # text and loc still reach the heads
    # the constant scale is applied: fused map = map · (2 + 1/N)/3
    torch.testing.assert_close(oa.aux["fused_map"], oa.aux["maps"]["video"] * (2 + 1 / 6) / 3)


def test_log_guided_renormalises_the_map_by_the_donors_guide():
    """M' = σ(A kᵀ/√d_h + λ log g), i.e. M·g^λ renormalised over the valid keys; λ = 0 is CAAF off."""
    hp = {"mode": "log_guided", "tokens": None, "keep_maps": True, "guide_scale": 1.5}
    f = build("v5", hp)
    streams = make_streams(lengths={"video": 6, "text": 6, "loc": 6})
    out = f(streams)
    m, s = out.aux["maps"]["video"], out.aux["maps"]["text"] + out.aux["maps"]["loc"]
    mask = streams["video"].mask[:, None, None, :]
    g = torch.softmax(s.masked_fill(~mask, float("-inf")), -1)
    expected = m * g ** 1.5
    expected = expected / expected.sum(-1, keepdim=True)
    torch.testing.assert_close(out.aux["fused_map"], expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.aux["fused_map"].sum(-1), torch.ones_like(m[..., 0]))  # renormalised
    f.train()
    f(streams).pooled.square().sum().backward()
    assert f.guide_scale.grad is not None and f.guide_scale.grad.abs() > 0  # λ is learned
    # λ = 0 removes the guidance: the same weights then give the corrected model without CAAF
    zero = build("v5", {**hp, "guide_scale": 1.0})
    zero.load_state_dict(f.state_dict())
    with torch.no_grad():
        zero.guide_scale.zero_()
    off = build("v5", {"mode": "corrected", "tokens": None, "caaf": False})
    off.load_state_dict({k: v for k, v in f.state_dict().items() if k != "guide_scale"})
    torch.testing.assert_close(zero(streams).pooled, off(streams).pooled, atol=1e-6, rtol=1e-5)
    with pytest.raises(FusionError, match="guide_scale applies to mode='log_guided' only"):
        build_fusion("v5", D, mode="corrected", tokens=None, guide_scale=2.0)


@pytest.mark.parametrize("mode,caaf", [("corrected", False), ("log_guided", True)])
def test_sdpa_and_explicit_paths_agree(mode, caaf):
    streams = make_streams()
    f = build("v5", {"mode": mode, "tokens": 6, "max_tokens": MAX, "caaf": caaf, "heads": 2})
    fast = f(streams)
    f.keep_maps = True
    slow = f(streams)
    torch.testing.assert_close(fast.pooled, slow.pooled, atol=1e-5, rtol=1e-5)
    assert fast.aux["maps"]["video"] is None and slow.aux["maps"]["video"].shape == (3, 2, 4, 6)
    # agent attention with a key-padding mask: explicit map rows are distributions over valid keys
    attn = AgentAttention(D, agents=3, heads=2).eval()
    x, mask = streams["text"].x, streams["text"].mask
    y1, s1 = attn(x, mask)
    y2, s2 = attn(x, mask, need_map=True)
    torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s2.agg_map.sum(-1), torch.ones(3, 2, 3))
    assert torch.count_nonzero(s2.agg_map.transpose(1, 3)[~mask]) == 0


def test_fully_masked_stream_gives_finite_outputs():
    streams = make_streams()
    loc = streams["loc"]
    streams["loc"] = StreamTokens(loc.x, torch.zeros_like(loc.mask), kind="loc")  # location-drop
    for variant, hparams in MASKED_VARIANTS:
        if hparams.get("tokens", 0) is None:
            continue
        out = build(variant, hparams)(streams)
        assert torch.isfinite(out.pooled).all(), variant


def test_v5_rejects_valid_tokens_beyond_max_tokens_and_unequal_unaligned_streams():
    f = build("v5", {"mode": "corrected", "tokens": 4, "max_tokens": {"video": 6, "text": 3, "loc": 4}})
    with pytest.raises(FusionError, match="valid tokens beyond max_tokens\\['text'\\]=3"):
        f(make_streams())
    g = build("v5", {"mode": "corrected", "tokens": None})
    with pytest.raises(FusionError, match="equal length"):
        g(make_streams())


# --------------------------------------------------------------------------------- MACs
ALL_FOR_MACS = [("v0", {}), ("concat", {}), ("v1", {}), ("v2", {}), ("v2b", {}), ("bottleneck", {}),
                ("v5", {"mode": "as_released", "max_tokens": MAX}), ("v5", {"mode": "corrected", "max_tokens": MAX}),
                ("v5", {"mode": "corrected", "tokens": None})]


@pytest.mark.parametrize("variant,hparams", ALL_FOR_MACS, ids=[f"{v}-{i}" for i, (v, _) in enumerate(ALL_FOR_MACS)])
def test_macs_positive_and_growing_with_video_tokens(variant, hparams):
    f = build(variant, hparams)
    costs = [f.macs({"video": nv, "text": 12, "loc": 20}) for nv in (8, 16, 256, 2056)]
    assert all(isinstance(c, int) and c > 0 for c in costs)
    assert costs == sorted(costs) and len(set(costs)) == len(costs)
    if variant == "v5" and f.tokens is not None:  # at N_v = N the video tokens need no projection,
        shapes = {"video": f.tokens, "text": 12, "loc": 20}  # as released (32 Q-Former tokens)
        assert f.macs(shapes) < f.macs(dict(shapes, video=f.tokens - 1))


def test_macs_match_the_papers_decomposition():
    d = 768
    # fusion.md §5.6: one RefAtomNet AgentBlock at N = 32, d = 768, n = 4, h = 1 is qkv 56.6M +
    # out-proj 18.9M + agent MLP 47.2M + agent core 0.39M + FFN 151M; our convention adds the
    # agent mean over tokens (N·n·d)
    block = AgentBlock(768, agents=4, heads=1)
    expected = 3 * 32 * d * d + 32 * d * d + 32 * (d * d // 2 + d // 2 * 4 * d) + 4 * 4 * 32 * d + 2 * 32 * d * 4 * d
    assert expected == 274_071_552
    assert block.macs(32) == expected + 32 * 4 * d
    # fusion.md §6.3 (attention part only, d = 768, h = 12, N_t = 32, N_l = 100)
    v1 = build_fusion("v1", d, heads=12, mlp_ratio=0.0)
    v2 = build_fusion("v2", d, heads=12, mlp_ratio=0.0)
    for n_v, g1, g2 in [(32, 0.43, 0.20), (256, 1.15, 0.51), (2056, 12.5, 3.00), (8224, 127, 11.5)]:
        shapes = {"video": n_v, "text": 32, "loc": 100}
        assert round(v1.macs(shapes) / 1e9, 2 if g1 < 10 else (1 if g1 < 100 else 0)) == g1
        assert round(v2.macs(shapes) / 1e9, 2 if g2 < 10 else 1) == g2


# ------------------------------------------------------------- released math by hand
def _lin(layer, x):
    return x @ layer.weight.T + (0 if layer.bias is None else layer.bias)


def _tok_lin(layer, x):  # Linear along the token axis
    return (x.transpose(1, 2) @ layer.weight.T + layer.bias).transpose(1, 2)


def _ln(layer, x):
    return F.layer_norm(x, x.shape[-1:], layer.weight, layer.bias, layer.eps)


def reference(f, streams: dict[str, StreamTokens], mode: str):
    """RefAtomNet's forward written out from ravar-spec §5.2–5.4 (h = 1), with f's weights."""
    d, n = f.d, f.n_agents
    released = mode != "corrected"

    def agent_attention(blk, x, maps=None, agents=None):
        a = blk.attn
        b, n_tok, _ = x.shape
        qkv = _lin(a.qkv, x)
        q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
        agent = _lin(a.pool[2], F.gelu(_lin(a.pool[0], q))).mean(1).reshape(b, 1, n, d)
        scale = d ** -0.5
        mka = torch.softmax(scale * agent @ k[:, None].transpose(-1, -2), -1)  # (B, 1, n, N)
        own = mka
        if maps is not None:
            s = maps
            if mode == "rescale_only":
                mka = mka * (2 + 1 / n_tok) / 3
            else:
                other = torch.softmax(s, 1) if released else torch.softmax(s, -2)
                mka = (mka * torch.softmax(s, -1) + mka * other + mka) / 3
        av = mka @ v[:, None]
        if agents is not None:
            u = agents
            if mode == "rescale_only":
                agent = agent * (2 + 1 / d) / 3
            else:
                other = torch.softmax(u, 1) if released else torch.softmax(u, -2)
                agent = (agent * torch.softmax(u, -1) + agent * other + agent) / 3
        mqa = torch.softmax(scale * q[:, None] @ agent.transpose(-1, -2), -1)  # (B, 1, N, n)
        return _lin(a.proj, (mqa @ av)[:, 0]), own, agent

    def block(blk, x, maps=None, agents=None):
        y, m, a = agent_attention(blk, _ln(blk.norm1, x), maps, agents)
        x = x + y
        return x + _lin(blk.mlp[2], F.gelu(_lin(blk.mlp[0], _ln(blk.norm2, x)))), m, a

    video = streams["video"].x  # N_v == tokens: used as is
    text = streams["text"]
    if released:
        t = _tok_lin(f.align["text"], text.x.mean(1, keepdim=True))  # padding included
    else:
        words = text.x * text.mask[..., None]
        words = torch.cat([words, words.new_zeros(words.shape[0], f.max_tokens["text"] - words.shape[1], d)], 1)
        t = _tok_lin(f.align["text"], words)
    l0 = streams["loc"].x
    l0p = torch.cat([l0, l0.new_zeros(l0.shape[0], f.max_tokens["loc"] - l0.shape[1], d)], 1)
    loc = _tok_lin(f.align["loc"], l0p)
    l_out, m_l, a_l = block(f.blocks["loc"], loc)
    t_out, m_t, a_t = block(f.blocks["text"], t)
    v_out, _, _ = block(f.blocks["video"], video, m_t + m_l, a_t + a_l)
    if released:
        z = l0.mean(1) + t_out.mean(1) + v_out.mean(1)
    else:
        z = (l_out.mean(1) + t_out.mean(1) + v_out.mean(1)) / 3
    return z, v_out


@pytest.mark.parametrize("mode", ["as_released", "rescale_only", "corrected"])
def test_v5_matches_hand_computed_released_math(mode):
    torch.manual_seed(0)
    f = build_fusion("v5", 8, mode=mode, agents=2, tokens=4,
                     max_tokens={"video": 4, "text": 6, "loc": 6}).double().eval()
    g = torch.Generator().manual_seed(1)
    b = 2
    text_mask = torch.ones(b, 5, dtype=torch.bool)
    text_mask[0, 3:] = False  # padding: the released mean counts it, corrected drops it
    loc = torch.randn(b, 5, 8, generator=g, dtype=torch.float64)
    loc[:, 3:] = 0.0  # non-person rows, zeroed as released
    loc_mask = torch.ones(b, 5, dtype=torch.bool)
    loc_mask[:, 3:] = False
    streams = {
        "video": StreamTokens.dense(torch.randn(b, 4, 8, generator=g, dtype=torch.float64), "video"),
        "text": StreamTokens(torch.randn(b, 5, 8, generator=g, dtype=torch.float64), text_mask, kind="text"),
        "loc": StreamTokens(loc, loc_mask, kind="loc"),
    }
    out = f(streams)
    z, v_out = reference(f, streams, mode)
    torch.testing.assert_close(out.pooled, z, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.aux["outputs"]["video"], v_out, atol=1e-6, rtol=0)
    if mode == "as_released":  # the size-1 head-axis softmax of the released code is exactly 1
        maps = out.aux["maps"]
        assert maps["video"] is not None
        s = maps["text"] + maps["loc"]
        torch.testing.assert_close(torch.softmax(s, 1), torch.ones_like(s))


def test_modes_differ_with_the_same_weights():
    torch.manual_seed(0)
    fs = {m: build_fusion("v5", D, mode=m, agents=4, tokens=6, max_tokens=MAX).eval()
          for m in ("as_released", "rescale_only")}
    fs["rescale_only"].load_state_dict(fs["as_released"].state_dict())
    streams = make_streams()
    va = fs["as_released"](streams).aux["outputs"]["video"]
    vr = fs["rescale_only"](streams).aux["outputs"]["video"]
    # the released gate is (2 + g)/3 with g ∈ (0, 1): close to, but not exactly, the constant
    assert not torch.allclose(va, vr, atol=1e-7)
    assert (va - vr).abs().max() < 0.5 * va.abs().max()
