"""Who is in a RAVAR-Synth video: appearance attributes a sentence can name, and body sizes.

A *cast* of people is drawn once per video and reused by every key frame (clip) of that video, so
person ids mean the same person across a video's clips, as AVA person ids do. Attributes are the
ones RefAVA sentences use (clothing colours, hat, bag, glasses, build); colours are few and far
apart in RGB so they survive JPEG and down-scaling to the prepared resolution.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

RGB = tuple[int, int, int]

#: Top (shirt) colours a sentence may name. Saturated and mutually distant.
TOP_COLOURS: dict[str, RGB] = {
    "red": (205, 32, 38), "blue": (38, 78, 210), "green": (32, 155, 58), "yellow": (238, 208, 36),
    "white": (236, 236, 232), "black": (28, 28, 30), "orange": (242, 128, 24),
    "purple": (128, 52, 168),
}
#: Bottom (trousers) colours a sentence may name.
BOTTOM_COLOURS: dict[str, RGB] = {
    "blue": (44, 66, 160), "black": (30, 30, 34), "grey": (128, 128, 132), "brown": (118, 78, 42),
    "white": (228, 228, 224), "green": (40, 112, 54), "red": (172, 36, 40),
}
# Rendered but never named: nuisance variety.
SKIN_TONES: tuple[RGB, ...] = ((241, 200, 165), (224, 172, 130), (198, 140, 98), (160, 108, 72),
                               (122, 82, 56))
HAIR_COLOURS: tuple[RGB, ...] = ((30, 24, 20), (92, 58, 30), (200, 170, 90), (150, 150, 150))
HAT_COLOURS: tuple[RGB, ...] = ((200, 40, 40), (40, 60, 150), (30, 30, 30), (230, 230, 230),
                                (200, 160, 40), (60, 120, 60))
BAG_COLOURS: tuple[RGB, ...] = ((100, 62, 30), (40, 36, 34), (140, 30, 40), (60, 80, 60))

BUILDS: tuple[str, ...] = ("child", "adult", "tall")
#: Standing height in render pixels (frame 160x120) per build, before a small random spread.
BUILD_HEIGHT: dict[str, float] = {"child": 30.0, "adult": 44.0, "tall": 52.0}

# Attribute probabilities for a fresh cast member.
P_HAT, P_GLASSES, P_BAG, P_BACKPACK = 0.28, 0.22, 0.14, 0.14
P_BUILD: dict[str, float] = {"child": 0.13, "adult": 0.72, "tall": 0.15}


@dataclass(frozen=True)
class Appearance:
    """Everything about a person that does not change over a video."""

    top: str  # key of TOP_COLOURS
    bottom: str  # key of BOTTOM_COLOURS
    hat: str | None  # None, "cap" or "hat"
    glasses: bool
    bag: str | None  # None, "bag" (shoulder bag) or "backpack"
    build: str  # child / adult / tall
    height: float  # standing height in render pixels
    skin: RGB
    hair: RGB
    hat_colour: RGB
    bag_colour: RGB

    def atoms(self) -> dict[str, object]:
        """The nameable attributes, as the expression model sees them."""
        return {"top": self.top, "bottom": self.bottom, "hat": self.hat is not None,
                "glasses": self.glasses, "bag": self.bag, "build": self.build}


@dataclass(frozen=True)
class Body:
    """Segment lengths and widths in render pixels, derived from height and build."""

    height: float
    head_r: float
    torso: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    limb_w: float
    torso_w: float

    @classmethod
    def of(cls, app: Appearance) -> "Body":
        h = app.height
        child = app.build == "child"
        head_r = h * (0.105 if child else 0.085)
        torso = h * (0.30 if child else 0.32)
        leg = h * (0.44 if child else 0.47)
        return cls(height=h, head_r=head_r, torso=torso, upper_arm=h * 0.17, forearm=h * 0.16,
                   thigh=leg * 0.51, shin=leg * 0.49, limb_w=max(2.0, h * 0.068),
                   torso_w=h * (0.21 if child else 0.19))

    @property
    def reach(self) -> float:
        """Horizontal distance from the shoulder to a hand held straight forward."""
        return self.upper_arm + self.forearm


def _pick(rng: np.random.Generator, options: dict[str, float]) -> str:
    names = list(options)
    p = np.array([options[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """A fresh, independent appearance."""
    build = _pick(rng, P_BUILD)
    u = rng.random()
    bag = "bag" if u < P_BAG else ("backpack" if u < P_BAG + P_BACKPACK else None)
    hat = None
    if rng.random() < P_HAT:
        hat = "cap" if rng.random() < 0.5 else "hat"
    return Appearance(
        top=str(rng.choice(list(TOP_COLOURS))), bottom=str(rng.choice(list(BOTTOM_COLOURS))),
        hat=hat, glasses=bool(rng.random() < P_GLASSES), bag=bag, build=build,
        height=float(BUILD_HEIGHT[build] * rng.uniform(0.96, 1.04)),
        skin=SKIN_TONES[int(rng.integers(len(SKIN_TONES)))],
        hair=HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))],
        hat_colour=HAT_COLOURS[int(rng.integers(len(HAT_COLOURS)))],
        bag_colour=BAG_COLOURS[int(rng.integers(len(BAG_COLOURS)))],
    )


_SHAREABLE = ("top", "bottom", "hat", "glasses", "bag", "build")


def sample_cast(rng: np.random.Generator, size: int, share: float) -> list[Appearance]:
    """``size`` people; with probability ``share`` each newcomer copies 1-2 nameable attributes
    of someone already cast. That makes distractors: people who match part of a description,
    so a sentence needs more than one attribute (the difficulty knob raises ``share``)."""
    cast: list[Appearance] = []
    for _ in range(size):
        app = sample_appearance(rng)
        if cast and rng.random() < share:
            model = cast[int(rng.integers(len(cast)))]
            k = 1 + int(rng.random() < 0.5)
            for attr in rng.choice(_SHAREABLE, size=k, replace=False):
                value = getattr(model, str(attr))
                if attr == "build":
                    app = replace(app, build=model.build,
                                  height=float(BUILD_HEIGHT[model.build] * rng.uniform(0.96, 1.04)))
                else:
                    app = replace(app, **{str(attr): value})
        cast.append(app)
    return cast
