"""The seven test-time perturbations of the RefAtomNet code (spec §4.4), written in numpy.

Each is a :data:`~ravar_bench.data.prepared.FrameTransform`: a uint8 RGB clip (T, H, W, 3) and a
numpy Generator in, a uint8 clip of the same shape out. The batch loader applies it to the clip
and, separately, to the key frame as a 1-frame clip, with a generator seeded per instance, so
results are reproducible and independent of batch size.

Severities 1..5 use the parameters the released code defines. Deviations, all to keep the shape
contract and make the perturbations resolution-independent:

* ``fog``: the released version centre-crops frames to 224x224; here the 256x256 plasma map is
  resized to the frame instead, and one map is drawn per clip (fog is a property of the scene).
* ``motion_blur``: the released version averages windows of ``2c`` raw 30-fps frames and drops
  ``2c`` frames. Here frame ``t`` becomes the mean of prepared frames ``t-c .. t+c-1`` with edge
  frames repeated, so T is kept. The window counts *prepared* frames (8 sampled over 3 s, so much
  longer in time than the original). For T=1, including the key frame, it is the identity.
* ``rain``: drop length and slant are given for 340-px-high frames (the ACAR frames the released
  code perturbs) and are scaled by ``s = H / 340``; the drop count (released: area // A) becomes
  area / (A s), so streaks of 1 px cover the same fraction of the frame as released. The slant
  is drawn once per clip, the drops anew for each frame.
* ``saturate``: like an HSV round trip, a grey pixel has hue 0, so the additive saturation of
  severities 4-5 tints grey pixels red, as in the original.

Severity ordering (checked in tests/test_perturb.py): mean absolute change grows with severity for
six types on dark, low-saturation content like movie frames, but two orderings depend on content
(rain 1->2 only lengthens light streaks, which offset the darkening on bright frames; saturate 1-2
desaturate while 3-5 oversaturate). Fog is not ordered by mean change at all (severities 3 and 4
share strength 2.5; a rougher fractal spreads less); what rises is the haze weight, i.e. the
fraction of scene contrast removed, 1 - p/(p+c) for a clip with peak p.

More perturbations plug in by name (:data:`PERTURBATIONS`): ``@register_perturbation("name")`` on
a function ``(clip, severity, rng) -> clip`` with this module's contract and severities 1..5, or
an entry point of the group ``ravar_bench.perturbations``. Suites and condition names use the name.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image

from ..registry import Registry

ENTRY_POINT_GROUP = "ravar_bench.perturbations"
#: The seven of spec §4.4, in its order; listings and error messages keep it, plug-ins follow.
SPEC_PERTURBATIONS: tuple[str, ...] = (
    "shot_noise", "rain", "fog", "brightness", "motion_blur", "contrast", "saturate",
)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

#: ``(uint8 clip (T, H, W, 3), severity 1..5, numpy Generator) -> uint8 clip of the same shape``.
PerturbFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
P = TypeVar("P", bound=PerturbFn)


def make_perturbation(name: str, fn: object, origin: str) -> PerturbFn:
    """The registry's entry: the function itself, once it is known to be callable."""
    if not callable(fn):
        raise ValueError(f"perturbation {name!r} ({origin}) is not callable: {fn!r}")
    return fn  # type: ignore[return-value]


def spec_order(name: str) -> tuple[int, str]:
    """Sort key: the spec's seven in its order, then plug-ins by name."""
    return (SPEC_PERTURBATIONS.index(name) if name in SPEC_PERTURBATIONS else len(SPEC_PERTURBATIONS), name)


#: Every perturbation: the seven below (registered when this module is imported; the data package
#: is not scanned, it holds heavy modules) and the ``ravar_bench.perturbations`` entry points.
#: Reads like the tuple of names it replaced (``in``, iteration in spec order).
PERTURBATIONS: Registry[PerturbFn] = Registry(
    "perturbation", package=__name__, group=ENTRY_POINT_GROUP, error=ValueError,
    make=make_perturbation, order=spec_order)


def register_perturbation(name: str) -> Callable[[P], P]:
    """Function decorator: register a perturbation under ``name`` (its condition name)."""
    return PERTURBATIONS.register(name)


# Parameters per severity 1..5 (spec §4.4).
SHOT_NOISE = (60, 25, 12, 5, 3)
RAIN = (  # (area per drop, drop length at 340 px, darkening factor)
    (770, 10, 0.8), (770, 30, 0.8), (770, 60, 0.7), (500, 60, 0.6), (400, 80, 0.5),
)
RAIN_COLOUR = 220.0 / 255.0
RAIN_SLANT = (-10, 10)
RAIN_REF_HEIGHT = 340
FOG = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))
FOG_MAP_SIZE = 256
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
MOTION_BLUR = (1, 2, 3, 4, 6)
CONTRAST = (0.5, 0.4, 0.3, 0.2, 0.1)
SATURATE = ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2))


def _to_float(clip: np.ndarray) -> np.ndarray:
    return clip.astype(np.float32) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- perturbations
@register_perturbation("shot_noise")
def shot_noise(clip: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Photon noise: Poisson counts at ``c`` photons per unit intensity, then rescaled."""
    c = SHOT_NOISE[severity - 1]
    return _to_uint8(rng.poisson(_to_float(clip) * c).astype(np.float32) / c)


def _box_blur3(frame: np.ndarray) -> np.ndarray:
    """3x3 mean filter with edge replication, on (H, W, C)."""
    h, w = frame.shape[:2]
    p = np.pad(frame, ((1, 1), (1, 1), (0, 0)), mode="edge")
    out = np.zeros_like(frame)
    for dy in range(3):
        for dx in range(3):
            out += p[dy:dy + h, dx:dx + w]
    return out / 9.0


@register_perturbation("rain")
def rain(clip: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Slanted light-grey streaks, a 3x3 blur, then darkening (overcast light)."""
    area_per_drop, length_ref, darken = RAIN[severity - 1]
    t, h, w, _ = clip.shape
    scale = h / RAIN_REF_HEIGHT
    length = int(np.clip(round(length_ref * scale), 1, max(h - 1, 1)))
    slant = float(rng.uniform(*RAIN_SLANT)) * scale
    n_drops = int(h * w / (area_per_drop * scale))
    x = _to_float(clip)
    steps = np.linspace(0.0, 1.0, length + 1, dtype=np.float32)
    out = np.empty_like(x)
    for i in range(t):
        frame = x[i].copy()
        if n_drops:
            x_lo, x_hi = max(0.0, -slant), max(w - max(slant, 0.0), max(0.0, -slant) + 1)
            x0 = rng.uniform(x_lo, x_hi, n_drops).astype(np.float32)
            y0 = rng.uniform(0, max(h - length, 1), n_drops).astype(np.float32)
            xs = np.clip(np.rint(x0[:, None] + steps[None] * slant), 0, w - 1).astype(np.intp)
            ys = np.clip(np.rint(y0[:, None] + steps[None] * length), 0, h - 1).astype(np.intp)
            frame[ys.ravel(), xs.ravel()] = RAIN_COLOUR
        out[i] = _box_blur3(frame) * darken
    return _to_uint8(out)


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) diamond-square height map in [0, 1]; ``size`` a power of two.

    Each halving of the step adds uniform noise of amplitude ``wibble`` to the mean of the
    neighbours, with ``wibble`` divided by ``decay`` per level: a smaller decay keeps more
    fine-scale texture. The map wraps around (neighbours are taken modulo ``size``).
    """
    if size < 2 or size & (size - 1):
        raise ValueError(f"plasma map size must be a power of two, got {size}")
    m = np.zeros((size, size), np.float64)
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        corners = m[0:size:step, 0:size:step]
        right, down = np.roll(corners, -1, axis=1), np.roll(corners, -1, axis=0)
        diag = np.roll(right, -1, axis=0)
        centres = (corners + right + down + diag) / 4 + rng.uniform(-wibble, wibble, corners.shape)
        m[half:size:step, half:size:step] = centres
        # Edge midpoints: two corners along the edge plus the two centres across it.
        horiz = (corners + right + centres + np.roll(centres, 1, axis=0)) / 4
        m[0:size:step, half:size:step] = horiz + rng.uniform(-wibble, wibble, corners.shape)
        vert = (corners + down + centres + np.roll(centres, 1, axis=1)) / 4
        m[half:size:step, 0:size:step] = vert + rng.uniform(-wibble, wibble, corners.shape)
        step, wibble = half, wibble / decay
    m -= m.min()
    peak = m.max()
    return m / peak if peak > 0 else m


@register_perturbation("fog")
def fog(clip: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Add a plasma-fractal haze of strength ``c0`` and rescale to keep the clip's peak."""
    strength, decay = FOG[severity - 1]
    _, h, w, _ = clip.shape
    haze = plasma_fractal(FOG_MAP_SIZE, decay, rng).astype(np.float32)
    if (h, w) != haze.shape:
        haze = np.asarray(Image.fromarray(haze).resize((w, h), Image.BILINEAR), np.float32)
    x = _to_float(clip)
    peak = x.max()
    x = x + strength * haze[None, :, :, None]
    return _to_uint8(x * peak / (peak + strength))


@register_perturbation("brightness")
def brightness(clip: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """HSV value + c. Hue and saturation fixed means every channel scales by V'/V."""
    del rng
    x = _to_float(clip)
    v = x.max(axis=-1, keepdims=True)
    v_new = np.minimum(v + BRIGHTNESS[severity - 1], 1.0)
    ratio = np.divide(v_new, v, out=np.zeros_like(v), where=v > 0)
    return _to_uint8(np.where(v > 0, x * ratio, v_new))


@register_perturbation("motion_blur")
def motion_blur(clip: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Temporal box average of ``2c`` frames around each frame, edges repeated (T kept)."""
    del rng
    c = MOTION_BLUR[severity - 1]
    t = clip.shape[0]
    x = clip.astype(np.float32)
    idx = np.clip(np.arange(t)[:, None] + np.arange(-c, c)[None], 0, t - 1)  # (T, 2c)
    return (x[idx].mean(axis=1) + 0.5).astype(np.uint8)


@register_perturbation("contrast")
def contrast(clip: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Pull every pixel towards its frame's per-channel mean by factor c."""
    del rng
    c = CONTRAST[severity - 1]
    x = _to_float(clip)
    means = x.mean(axis=(1, 2), keepdims=True)
    return _to_uint8((x - means) * c + means)


@register_perturbation("saturate")
def saturate(clip: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """HSV saturation S -> clip(S * a + b). With V and hue fixed, a channel is V - S*V*w(hue)."""
    del rng
    a, b = SATURATE[severity - 1]
    x = _to_float(clip)
    v = x.max(axis=-1, keepdims=True)
    chroma = v - x.min(axis=-1, keepdims=True)
    s = np.divide(chroma, v, out=np.zeros_like(v), where=v > 0)
    s_new = np.clip(s * a + b, 0.0, 1.0)
    grey_hue = np.array([0.0, 1.0, 1.0], np.float32)  # hue 0 (red) weights, as rgb2hsv gives grey
    w = np.where(chroma > 0, np.divide(v - x, chroma, out=np.zeros_like(x), where=chroma > 0), grey_hue)
    return _to_uint8(v - s_new * v * w)


@dataclass(frozen=True)
class Perturbation:
    """A named perturbation at one severity; callable as a FrameTransform (and picklable)."""

    name: str
    severity: int

    def __post_init__(self) -> None:
        PERTURBATIONS.get(self.name)  # unknown names: ValueError with "did you mean"
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        clip = np.asarray(frames)
        if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[-1] != 3 or 0 in clip.shape:
            raise ValueError(
                f"{self.name}: expected a uint8 clip (T, H, W, 3), got {clip.dtype} {clip.shape}")
        out = PERTURBATIONS.get(self.name)(clip, self.severity, rng)
        if not isinstance(out, np.ndarray) or out.shape != clip.shape or out.dtype != np.uint8:
            raise ValueError(f"{self.name}: must return a uint8 clip of shape {clip.shape} (a plug-in "
                             f"broke the contract), got {getattr(out, 'dtype', type(out).__name__)} "
                             f"{getattr(out, 'shape', '')}")
        return out

    def __str__(self) -> str:
        return f"{self.name}@{self.severity}"


def get_perturbation(name: str, severity: int) -> Perturbation:
    """The FrameTransform for ``name`` (registered in :data:`PERTURBATIONS`) at severity 1..5."""
    return Perturbation(name, int(severity))


def parse_perturbation(spec: str) -> Perturbation:
    """Parse ``"name@severity"`` (e.g. ``"fog@3"``), the form used on command lines."""
    name, sep, sev = spec.partition("@")
    if not sep or not sev.strip().isdigit():
        raise ValueError(f"perturbation {spec!r} must look like name@severity, e.g. fog@3")
    return get_perturbation(name.strip(), int(sev))
