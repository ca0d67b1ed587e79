"""Han et al.'s two grid-bound terms of agent attention, for a video stream laid out on a grid
(fusion.md §1.1, §6.2 V3): the depthwise-conv "diversity restoration" term (DWC) and the agent
position biases.

Both need a regular grid, and token order is not one: reducers reorder tokens (fusion.md §6.2,
ToMe issue #45) and padding interleaves. So the grid is rebuilt from each token's ``pos`` (cell
centres in [0, 1], (y, x) or (t, y, x), as the adapters provide): a token belongs to cell
⌊pos·g⌋ on every axis. Tokens sharing a cell (merged ones) are averaged into it, empty cells are
zero, padded tokens are dropped. The result is the same whatever the token order.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import FusionError, pool_by_index, zero_padded

#: Han et al. keep a 7×7 base bias and interpolate it to the window.
BASE_BIAS_SIDE = 7


def check_grid(grid: tuple[int, ...] | None, where: str) -> tuple[int, ...]:
    """A 2-D (H, W) or 3-D (T, H, W) grid of positive ints."""
    if grid is None:
        raise FusionError(f"{where}: dwc/agent_bias need video_grid, the video stream's grid (H, W) or "
                          f"(T, H, W); the stream has none (e.g. BLIP-2 Q-Former tokens)")
    grid = tuple(grid)
    if len(grid) not in (2, 3) or not all(isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in grid):
        raise FusionError(f"{where}: video_grid must be 2 or 3 positive ints, got {grid!r}")
    return grid


def grid_cells(pos: torch.Tensor | None, mask: torch.Tensor, grid: tuple[int, ...], where: str) -> torch.Tensor:
    """Flat cell index (B, N) of every valid token from its position; padded tokens get
    ``prod(grid)`` (a dropped bucket)."""
    if pos is None:
        raise FusionError(f"{where}: grid pooling, dwc and agent_bias need positions on the video stream (pos is None)")
    if pos.shape[-1] != len(grid):
        raise FusionError(f"{where}: video positions have {pos.shape[-1]} coordinates but video_grid={grid} "
                          f"has {len(grid)} axes")
    idx = torch.zeros_like(mask, dtype=torch.long)
    for axis, g in enumerate(grid):
        idx = idx * g + (pos[..., axis].detach().float() * g).floor().long().clamp(0, g - 1)
    return torch.where(mask, idx, torch.full_like(idx, math.prod(grid)))


class GridDWC(nn.Module):
    """DWC: values scattered to the grid, a k×k(×k) depthwise convolution, read back per token.

    Added to the attention output before the output projection, it restores the local detail
    that the rank-n agent path smooths away. Costs k^p·d MACs per grid cell."""

    def __init__(self, d: int, grid: tuple[int, ...], kernel: int = 3) -> None:
        super().__init__()
        self.d, self.grid, self.kernel = d, grid, kernel
        conv = nn.Conv2d if len(grid) == 2 else nn.Conv3d
        self.conv = conv(d, d, kernel, padding=kernel // 2, groups=d)

    def forward(self, v: torch.Tensor, cells: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, _, d = v.shape
        n_cells = math.prod(self.grid)
        dense, _ = pool_by_index(v, cells, mask, n_cells)  # empty cells are zero
        out = self.conv(dense.transpose(1, 2).reshape(b, d, *self.grid)).reshape(b, d, n_cells).transpose(1, 2)
        out = torch.cat([out, out.new_zeros(b, 1, d)], 1).gather(1, cells[..., None].expand(-1, -1, d))
        return zero_padded(out, mask)

    def macs(self) -> int:
        return self.kernel ** len(self.grid) * math.prod(self.grid) * self.d


class GridAgentBias(nn.Module):
    """Agent position biases: B₁ (agent → key, (B, h, n, N)) for the aggregation and B₂
    (query → agent, (B, h, N, n)) for the broadcast.

    Each is, per head and agent, a low-resolution base bias (≤ 7 per axis) interpolated to the
    grid plus one additive bias per axis (row, column, and time for video, Han et al. issue #13),
    looked up at every token's cell. Trunc-normal init, std 0.02, as in Han et al."""

    def __init__(self, heads: int, agents: int, grid: tuple[int, ...]) -> None:
        super().__init__()
        self.h, self.n, self.grid = heads, agents, grid
        base = tuple(min(BASE_BIAS_SIDE, g) for g in grid)

        def table(*shape: int) -> nn.Parameter:
            p = nn.Parameter(torch.zeros(*shape))
            nn.init.trunc_normal_(p, std=0.02)
            return p

        self.base = nn.ParameterList([table(heads, agents, *base) for _ in range(2)])
        self.axes = nn.ParameterList([table(heads, agents, g) for _ in range(2) for g in grid])

    def _table(self, which: int) -> torch.Tensor:
        """(h, n, prod(grid)) bias over the cells, with a zero column for the dropped bucket."""
        mode = "bilinear" if len(self.grid) == 2 else "trilinear"
        t = F.interpolate(self.base[which], size=self.grid, mode=mode, align_corners=False)
        p = len(self.grid)
        for axis, g in enumerate(self.grid):
            shape = [self.h, self.n] + [g if i == axis else 1 for i in range(p)]
            t = t + self.axes[which * p + axis].view(shape)
        t = t.reshape(self.h, self.n, -1)
        return torch.cat([t, t.new_zeros(self.h, self.n, 1)], -1)

    def forward(self, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        agg = self._table(0)[:, :, cells].permute(2, 0, 1, 3)  # (B, h, n, N)
        bcast = self._table(1)[:, :, cells].permute(2, 0, 3, 1)  # (B, h, N, n)
        return agg, bcast


__all__ = ["BASE_BIAS_SIDE", "check_grid", "grid_cells", "GridDWC", "GridAgentBias"]
