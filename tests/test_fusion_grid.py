"""Han et al.'s grid-bound agent-attention terms on V3 (grid.py): the depthwise-conv term (DWC)
and the agent position biases. The grid is rebuilt from positions, so the result must not
depend on token order; DWC must be a local 3×3 (×3) convolution; zero biases must be no biases;
the costs must match the FLOP counter; and the fusion_model adapter must pass its grid in."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import make_random_split
from ravar_bench.adapters.fusion import FusionError, StreamTokens, build_fusion
from ravar_bench.adapters.fusion.grid import GridAgentBias, GridDWC, grid_cells
from ravar_bench.adapters.registry import get_adapter
from ravar_bench.data.batches import dataset_info
from ravar_bench.train import TrainConfig, fit

D = 8


def centres(*grid: int) -> torch.Tensor:
    """Row-major cell centres of a grid, (prod(grid), len(grid))."""
    axes = [(torch.arange(g) + 0.5) / g for g in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(grid))


def streams(grid=(3, 4), b=2, seed=0) -> dict[str, StreamTokens]:
    g = torch.Generator().manual_seed(seed)
    pos = centres(*grid).expand(b, -1, -1).clone()
    n = pos.shape[1]
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, -2:] = False
    text_mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    return {"video": StreamTokens(torch.randn(b, n, D, generator=g), mask, pos=pos, kind="video"),
            "text": StreamTokens(torch.randn(b, 5, D, generator=g), text_mask, kind="text")}


def v3(grid=(3, 4), seed=0, **kw):
    torch.manual_seed(seed)
    params = {"agents": 4, "heads": 2, "dwc": True, "agent_bias": True, "video_grid": grid, **kw}
    return build_fusion("v3", D, streams=("video", "text"), **params).eval()


def test_outputs_follow_the_tokens_not_their_order():
    f, s = v3(pooling="grid"), streams()
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    v = s["video"]
    shuffled = dict(s, video=StreamTokens(v.x[:, perm], v.mask[:, perm], pos=v.pos[:, perm], kind="video"))
    a, b = f(s), f(shuffled)
    torch.testing.assert_close(b.tokens[:, :12], a.tokens[:, :12][:, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.pooled, a.pooled, atol=1e-5, rtol=1e-5)


def test_dwc_is_the_depthwise_convolution_of_the_grid():
    torch.manual_seed(0)
    grid = (3, 4)
    dwc = GridDWC(D, grid)
    v = torch.randn(1, 12, D)
    mask = torch.ones(1, 12, dtype=torch.bool)
    cells = grid_cells(centres(*grid)[None], mask, grid, "test")
    expected = dwc.conv(v.transpose(1, 2).reshape(1, D, *grid)).reshape(1, D, 12).transpose(1, 2)
    torch.testing.assert_close(dwc(v, cells, mask), expected)
    # local: changing the token at cell (0, 0) changes only its 3×3 neighbourhood
    bumped = v.clone()
    bumped[0, 0] += 10.0
    changed = (dwc(bumped, cells, mask) - dwc(v, cells, mask)).abs().sum(-1)[0] > 1e-6
    assert changed.nonzero().flatten().tolist() == [0, 1, 4, 5]


def test_dwc_on_a_video_grid_uses_a_3d_convolution_and_ignores_padding():
    torch.manual_seed(0)
    grid = (2, 3, 3)
    dwc = GridDWC(D, grid)
    assert isinstance(dwc.conv, nn.Conv3d) and dwc.macs() == 27 * 18 * D
    v = torch.randn(1, 18, D)
    mask = torch.ones(1, 18, dtype=torch.bool)
    mask[0, 5] = False
    cells = grid_cells(centres(*grid)[None], mask, grid, "test")
    out = dwc(v, cells, mask)
    garbage = v.clone()
    garbage[0, 5] = 1e4
    torch.testing.assert_close(dwc(garbage, cells, mask), out)
    assert torch.count_nonzero(out[0, 5]) == 0


def test_merged_tokens_sharing_a_cell_are_averaged_into_it():
    torch.manual_seed(0)
    dwc = GridDWC(D, (2, 2))
    pos = centres(2, 2)[None]
    v = torch.randn(1, 4, D)
    mask = torch.ones(1, 4, dtype=torch.bool)
    full = dwc(v, grid_cells(pos, mask, (2, 2), "t"), mask)
    # split cell 3's token into two tokens whose mean is the original: same grid, same output there
    twin = torch.cat([v[:, :3], v[:, 3:] + 1.0, v[:, 3:] - 1.0], 1)
    pos2 = torch.cat([pos, pos[:, 3:]], 1)
    mask2 = torch.ones(1, 5, dtype=torch.bool)
    out = dwc(twin, grid_cells(pos2, mask2, (2, 2), "t"), mask2)
    torch.testing.assert_close(out[:, :3], full[:, :3])
    torch.testing.assert_close(out[:, 3], out[:, 4])


def test_zero_biases_are_no_biases_and_learned_biases_matter():
    s = streams()
    plain = v3(dwc=False, agent_bias=False)
    biased = v3(dwc=False)
    biased.load_state_dict(plain.state_dict(), strict=False)  # same weights, plus the bias tables
    for p in biased.blocks["video"][0].bias.parameters():
        nn.init.zeros_(p)
    torch.testing.assert_close(biased(s).pooled, plain(s).pooled)
    for p in biased.blocks["video"][0].bias.parameters():
        nn.init.normal_(p, std=1.0)
    assert not torch.allclose(biased(s).pooled, plain(s).pooled, atol=1e-4)
    biased.train()
    biased(s).pooled.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in biased.blocks["video"][0].bias.parameters())


def test_bias_tables_have_hans_shapes():
    bias = GridAgentBias(heads=2, agents=4, grid=(2, 9, 9))
    assert [tuple(p.shape) for p in bias.base] == [(2, 4, 2, 7, 7)] * 2  # base ≤ 7 per axis, interpolated
    assert sorted(tuple(p.shape) for p in bias.axes) == sorted([(2, 4, 2), (2, 4, 9), (2, 4, 9)] * 2)
    cells = torch.tensor([[0, 161, 162]])  # first cell, last cell, the dropped bucket
    agg, bcast = bias(cells)
    assert agg.shape == (1, 2, 4, 3) and bcast.shape == (1, 2, 3, 4)
    assert torch.count_nonzero(agg[..., 2]) == 0


def test_errors_name_the_missing_grid_or_positions():
    with pytest.raises(FusionError, match="video_grid"):
        build_fusion("v3", D, dwc=True)
    with pytest.raises(FusionError, match="video_grid must be 2 or 3 positive ints"):
        build_fusion("v3", D, agent_bias=True, video_grid=(3,))
    with pytest.raises(FusionError, match="video stream"):
        build_fusion("v3", D, streams=("text", "loc"), query_stream="text", dwc=True, video_grid=(3, 3))
    s = streams()
    no_pos = dict(s, video=StreamTokens(s["video"].x, s["video"].mask, kind="video"))
    with pytest.raises(FusionError, match="pos is None"):
        v3()(no_pos)
    with pytest.raises(FusionError, match="3 axes"):
        v3(grid=(2, 3, 2))(s)


def test_macs_add_the_convolution_and_agree_with_the_flop_counter():
    from ravar_bench.efficiency import flop_counter  # counts CPU flash attention too

    grid, d = (8, 12), 64
    torch.manual_seed(0)
    f = build_fusion("v3", d, streams=("video", "text"), agents=16, dwc=True, agent_bias=True, video_grid=grid).eval()
    plain = build_fusion("v3", d, streams=("video", "text"), agents=16).eval()
    n = {"video": 96, "text": 12}
    assert f.macs(n) - plain.macs(n) == 9 * 96 * d
    s = {"video": StreamTokens(torch.randn(2, 96, d), torch.ones(2, 96, dtype=torch.bool),
                               pos=centres(*grid).expand(2, -1, -1), kind="video"),
         "text": StreamTokens.dense(torch.randn(2, 12, d), "text")}
    counter = flop_counter()
    with counter, torch.no_grad():
        f(s)
    counted = counter.get_total_flops() / 2 / 2
    assert 0.95 * f.macs(n) <= counted <= f.macs(n), (counted, f.macs(n))


def test_fusion_model_passes_its_video_grid_and_trains():
    split = make_random_split(n_clips=4, per_clip=2, frames=2, size=64)
    torch.manual_seed(0)
    m = get_adapter("fusion_model").build(dataset_info(split), {
        "fusion": "v3", "fusion_params": {"agents": 4, "heads": 2, "dwc": True, "agent_bias": True},
        "dim": 32, "hidden": 64, "freeze": True})
    block = m.fusion.blocks["video"][0]
    assert block.grid == m.streams.grid == (4, 4) and block.dwc is not None and block.bias is not None
    assert m.fusion.blocks["text"][0].dwc is None  # no grid on text
    cfg = TrainConfig(epochs=30, batch_size=8, lr=5e-3, schedule="constant", weight_decay=0.0, select_metric="")
    hist = [h["loss"] for h in fit(m, split, None, cfg).history]
    assert hist[-1] < 0.85 * hist[0], hist
