"""The seven test-time perturbations: shape contract, determinism, severity ordering."""
from __future__ import annotations

import colorsys
import copy
import pickle

import numpy as np
import pytest

from ravar_bench.data.perturb import (
    PERTURBATIONS, SEVERITIES, get_perturbation, parse_perturbation, plasma_fractal,
)

RANDOM = ("shot_noise", "rain", "fog")  # the perturbations that draw from the generator


def textured_clip(t: int = 8, h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    """A moving, low-saturation, darkish texture: the regime of typical movie frames."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    grey = 0.3 + 0.2 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    base = np.stack([grey * 1.1, grey, grey * 0.9], axis=-1)
    frames = [np.roll(base, 3 * i, axis=1) + 0.04 * rng.standard_normal((h, w, 1)) for i in range(t)]
    return (np.clip(np.stack(frames), 0, 1) * 255).astype(np.uint8)


CLIP = textured_clip()


def change(name: str, severity: int, clip: np.ndarray = CLIP, seed: int = 1) -> float:
    out = get_perturbation(name, severity)(clip, np.random.default_rng(seed))
    return float(np.abs(out.astype(np.float64) - clip).mean())


@pytest.mark.parametrize("name", PERTURBATIONS)
@pytest.mark.parametrize("t", [1, 8])
def test_shape_and_dtype_kept(name: str, t: int) -> None:
    clip = CLIP[:t]
    for severity in SEVERITIES:
        out = get_perturbation(name, severity)(clip, np.random.default_rng(0))
        assert out.shape == clip.shape and out.dtype == np.uint8
    assert (clip == CLIP[:t]).all()  # input untouched


def test_odd_sizes() -> None:
    clip = textured_clip(t=3, h=17, w=9)
    for name in PERTURBATIONS:
        assert get_perturbation(name, 5)(clip, np.random.default_rng(0)).shape == clip.shape


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_deterministic_given_generator(name: str) -> None:
    p = get_perturbation(name, 3)
    a = p(CLIP, np.random.default_rng(7))
    b = p(CLIP, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    if name in RANDOM:
        assert not np.array_equal(a, p(CLIP, np.random.default_rng(8)))


@pytest.mark.parametrize("name", [n for n in PERTURBATIONS if n != "fog"])
def test_severity_monotonic(name: str) -> None:
    # rain 1->2 only lengthens the light streaks and saturate 1-2 desaturate while 3-5
    # oversaturate: their ordering by mean change holds for dark, low-saturation content (CLIP).
    changes = [change(name, s) for s in SEVERITIES]
    assert all(b > a for a, b in zip(changes, changes[1:])), changes
    assert changes[0] > 0.5


def test_fog_severity() -> None:
    # Mean absolute change is NOT monotonic for fog: the released severities 3 and 4 share the
    # strength 2.5 and differ only in fractal roughness, and a rougher map has less spread, so
    # with some draws a higher severity changes pixels less. What fog severity controls is how
    # much of the scene survives: for a clip with peak 1, out = (x + c*haze) / (1 + c), so two
    # clips fogged with the same draw differ by 1 / (1 + c) of their original difference.
    a, b = CLIP.copy(), textured_clip(seed=5)[:, ::-1].copy()
    a[:, 0, 0] = b[:, 0, 0] = 255
    base = np.abs(a.astype(np.float64) - b).mean()
    kept = []
    for s, strength in zip(SEVERITIES, (1.5, 2.0, 2.5, 2.5, 3.0)):
        p = get_perturbation("fog", s)
        fa = p(a, np.random.default_rng(3)).astype(np.float64)
        fb = p(b, np.random.default_rng(3)).astype(np.float64)
        kept.append(np.abs(fa - fb).mean() / base)
        assert kept[-1] == pytest.approx(1 / (1 + strength), abs=3e-3)
    assert kept[0] > kept[1] > kept[2] > kept[4] and kept[3] >= kept[4]
    assert change("fog", 1) > 5


def test_motion_blur_identity_for_one_frame() -> None:
    for s in SEVERITIES:
        np.testing.assert_array_equal(get_perturbation("motion_blur", s)(CLIP[:1], None), CLIP[:1])


def test_still_clip_unchanged_by_motion_blur() -> None:
    still = np.repeat(CLIP[:1], 8, axis=0)
    np.testing.assert_array_equal(get_perturbation("motion_blur", 5)(still, np.random.default_rng(0)), still)


def test_plasma_fractal() -> None:
    m = plasma_fractal(64, 1.7, np.random.default_rng(0))
    assert m.shape == (64, 64) and m.min() == 0.0 and m.max() == 1.0
    with pytest.raises(ValueError):
        plasma_fractal(60, 2.0, np.random.default_rng(0))


def test_errors_and_parsing() -> None:
    with pytest.raises(ValueError, match="unknown perturbation"):
        get_perturbation("snow", 1)
    with pytest.raises(ValueError, match="severity"):
        get_perturbation("fog", 6)
    with pytest.raises(ValueError, match="uint8"):
        get_perturbation("fog", 1)(CLIP.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        get_perturbation("fog", 1)(CLIP[0], np.random.default_rng(0))
    p = parse_perturbation("motion_blur@2")
    assert (p.name, p.severity, str(p)) == ("motion_blur", 2, "motion_blur@2")
    assert pickle.dumps(p) and copy.deepcopy(p) == p  # picklable for worker processes
    with pytest.raises(ValueError, match="name@severity"):
        parse_perturbation("fog")


@pytest.mark.parametrize("name", ["saturate", "brightness"])
def test_matches_hsv_round_trip(name: str) -> None:
    # the closed forms in perturb.py equal an explicit RGB -> HSV -> RGB round trip
    from ravar_bench.data.perturb import BRIGHTNESS, SATURATE

    clip = (np.random.default_rng(0).random((1, 5, 6, 3)) * 255).astype(np.uint8)
    clip[0, 0, 0], clip[0, 0, 1] = (90, 90, 90), (0, 0, 0)  # grey and black pixels
    for s in SEVERITIES:
        out = get_perturbation(name, s)(clip, np.random.default_rng(0))
        for idx in np.ndindex(clip.shape[:3]):
            h, sat, v = colorsys.rgb_to_hsv(*(clip[idx] / 255.0))
            if name == "saturate":
                a, b = SATURATE[s - 1]
                sat = min(max(sat * a + b, 0.0), 1.0)
            else:
                v = min(v + BRIGHTNESS[s - 1], 1.0)
            want = np.array(colorsys.hsv_to_rgb(h, sat, v)) * 255
            assert np.abs(want - out[idx]).max() <= 1.0, (s, idx)
