"""Draw a scene at any clip time with PIL only, and measure what a detector would see.

Frames are drawn at ``SUPERSAMPLE`` x the render size and box-filtered down, which anti-aliases
thin limbs and lets sub-pixel motion show. Camera jitter shifts the world; lighting drift, motion
blur and sensor noise are applied to the finished frame. Everything random is seeded from the
scene, so a frame is a pure function of (scene, time).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .motion import KEY_T, Skeleton, give_progress, throw_release
from .people import BOTTOM_COLOURS, TOP_COLOURS, RGB
from .scenes import Actor, Prop, Scene

SUPERSAMPLE = 2
MARGIN = 6  # background border (render px) that camera jitter may reveal
Box = tuple[float, float, float, float]
_SHOE: RGB = (38, 34, 30)
_DARK: RGB = (16, 16, 18)
_CUP_COLOURS: tuple[RGB, ...] = ((232, 232, 228), (196, 64, 52), (64, 96, 176))
_BOOK_COLOURS: tuple[RGB, ...] = ((150, 40, 40), (40, 70, 130), (60, 110, 60))


def _shade(c: RGB, k: float) -> RGB:
    return (int(c[0] * k), int(c[1] * k), int(c[2] * k))


class Canvas:
    """An ImageDraw that takes render-pixel coordinates and applies scale and camera shift."""

    def __init__(self, image: Image.Image, ox: float, oy: float) -> None:
        self.image, self.draw = image, ImageDraw.Draw(image)
        self.ox, self.oy, self.s = ox, oy, SUPERSAMPLE

    def p(self, pt: tuple[float, float]) -> tuple[float, float]:
        return ((pt[0] + self.ox) * self.s, (pt[1] + self.oy) * self.s)

    def seg(self, a: tuple[float, float], b: tuple[float, float], w: float, c: RGB) -> None:
        pa, pb = self.p(a), self.p(b)
        r = w * self.s / 2
        self.draw.line([pa, pb], fill=c, width=max(1, int(round(w * self.s))))
        for q in (pa, pb):
            self.draw.ellipse((q[0] - r, q[1] - r, q[0] + r, q[1] + r), fill=c)

    def disc(self, c0: tuple[float, float], r: float, c: RGB) -> None:
        q = self.p(c0)
        self.draw.ellipse((q[0] - r * self.s, q[1] - r * self.s, q[0] + r * self.s, q[1] + r * self.s), fill=c)

    def rect(self, box: Box, c: RGB, outline: RGB | None = None) -> None:
        a, b = self.p((box[0], box[1])), self.p((box[2], box[3]))
        self.draw.rectangle((a[0], a[1], max(a[0], b[0] - 1), max(a[1], b[1] - 1)), fill=c, outline=outline)

    def poly(self, pts: list[tuple[float, float]], c: RGB) -> None:
        self.draw.polygon([self.p(q) for q in pts], fill=c)

    def chord(self, c0: tuple[float, float], r: float, start: float, end: float, c: RGB) -> None:
        q = self.p(c0)
        s = r * self.s
        self.draw.chord((q[0] - s, q[1] - s, q[0] + s, q[1] + s), start, end, fill=c)


# ------------------------------------------------------------------------ person geometry
def _axes(sk: Skeleton) -> tuple[tuple[float, float], tuple[float, float]]:
    """Unit vectors along the torso (hip -> neck) and towards the front of the body."""
    ux, uy = sk.neck[0] - sk.hip[0], sk.neck[1] - sk.hip[1]
    n = math.hypot(ux, uy) or 1.0
    ux, uy = ux / n, uy / n
    return (ux, uy), (-uy * sk.facing, ux * sk.facing)


def _backpack(a: Actor, sk: Skeleton) -> list[tuple[float, float]]:
    (ux, uy), (fx, fy) = _axes(sk)
    b = a.body
    cx = sk.hip[0] + (sk.neck[0] - sk.hip[0]) * 0.62 - fx * b.torso_w * 0.62
    cy = sk.hip[1] + (sk.neck[1] - sk.hip[1]) * 0.62 - fy * b.torso_w * 0.62
    hl, hw = b.torso * 0.3, b.torso_w * 0.38
    return [(cx + ux * hl * i + fx * hw * j, cy + uy * hl * i + fy * hw * j)
            for i, j in ((1, 1), (1, -1), (-1, -1), (-1, 1))]


def _bag(a: Actor, sk: Skeleton) -> list[tuple[float, float]]:
    (ux, uy), (fx, fy) = _axes(sk)
    b = a.body
    cx = sk.hip[0] + (sk.neck[0] - sk.hip[0]) * 0.1 + fx * b.torso_w * 0.1
    cy = sk.hip[1] + (sk.neck[1] - sk.hip[1]) * 0.1 + fy * b.torso_w * 0.1
    hl, hw = b.torso * 0.15, b.torso_w * 0.4
    return [(cx + ux * hl * i + fx * hw * j, cy + uy * hl * i + fy * hw * j)
            for i, j in ((1, 1), (1, -1), (-1, -1), (-1, 1))]


def _hat_box(a: Actor, sk: Skeleton) -> Box | None:
    r = a.body.head_r
    hx, hy = sk.head
    if a.app.hat == "hat":
        return (hx - 1.45 * r, hy - 1.9 * r, hx + 1.45 * r, hy - 0.55 * r)
    if a.app.hat == "cap":
        return (hx - 1.5 * r, hy - 1.15 * r, hx + 1.5 * r, hy - 0.2 * r)
    return None


def _chair_geometry(a: Actor, sk: Skeleton) -> dict[str, Box] | None:
    """The chair under a seated person (part of the person's drawing, a detector's chair)."""
    if a.spec.pose != "sit":
        return None
    h, f = a.body.height, sk.facing
    seat_y = sk.hip[1] + a.body.torso_w * 0.45
    x_back, x_front = sk.hip[0] - f * 0.13 * h, sk.hip[0] + f * 0.2 * h
    x1, x2 = min(x_back, x_front), max(x_back, x_front)
    th = max(1.2, 0.05 * h)
    return {"seat": (x1, seat_y, x2, seat_y + th),
            "back": (x_back - 0.5 * th, seat_y - 0.32 * h, x_back + 0.5 * th, seat_y),
            "leg1": (x1, seat_y, x1 + th * 0.8, a.ground),
            "leg2": (x2 - th * 0.8, seat_y, x2, a.ground)}


def _union(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def person_box(a: Actor, sk: Skeleton) -> Box:
    """Tight box of the person (head to toe, hat and bags included, held objects excluded)."""
    b = a.body
    pts = [sk.hip, sk.neck] + sk.elbows + sk.hands + sk.knees + sk.feet
    w = b.limb_w / 2
    boxes = [(min(p[0] for p in pts) - w, min(p[1] for p in pts) - w,
              max(p[0] for p in pts) + w, max(p[1] for p in pts) + w)]
    tw = b.torso_w / 2
    boxes.append((min(sk.hip[0], sk.neck[0]) - tw, min(sk.hip[1], sk.neck[1]) - tw,
                  max(sk.hip[0], sk.neck[0]) + tw, max(sk.hip[1], sk.neck[1]) + tw))
    r = b.head_r
    boxes.append((sk.head[0] - r, sk.head[1] - r, sk.head[0] + r, sk.head[1] + r))
    hat = _hat_box(a, sk)
    if hat:
        boxes.append(hat)
    if a.app.bag:
        pts = _backpack(a, sk) if a.app.bag == "backpack" else _bag(a, sk)
        boxes.append((min(p[0] for p in pts), min(p[1] for p in pts),
                      max(p[0] for p in pts), max(p[1] for p in pts)))
    return _union(boxes)


@dataclass
class Held:
    kind: str  # cup / phone / book / open_book / box / ball
    centre: tuple[float, float]
    size: tuple[float, float]
    colour: RGB

    @property
    def box(self) -> Box:
        return (self.centre[0] - self.size[0] / 2, self.centre[1] - self.size[1] / 2,
                self.centre[0] + self.size[0] / 2, self.centre[1] + self.size[1] / 2)


def held_object(scene: Scene, i: int, t: float, sks: list[Skeleton]) -> Held | None:
    """The object in (or leaving) person ``i``'s hands at time ``t``, if any."""
    a, sk = scene.actors[i], sks[i]
    spec, h = a.spec, a.body.height
    kind = spec.held
    if kind is None or spec.special == "take":
        return None
    colour = (150, 110, 66)
    if kind == "cup":
        colour = _CUP_COLOURS[int(a.var * 97) % 3]
    elif kind == "book":
        colour = _BOOK_COLOURS[int(a.var * 89) % 3]
    elif kind == "phone":
        colour = (30, 30, 34)
    elif kind == "ball":
        colour = (226, 122, 34)
    sizes = {"cup": (0.09, 0.12), "phone": (0.05, 0.1), "book": (0.15, 0.2), "box": (0.3, 0.24),
             "ball": (0.12, 0.12)}
    size = (sizes[kind][0] * h, sizes[kind][1] * h)
    hand = sk.hands[0]
    if spec.special == "give" and spec.partner is not None:
        u = give_progress(t, a.var)
        other = sks[spec.partner].hands[0]
        hand = (hand[0] + (other[0] - hand[0]) * u, hand[1] + (other[1] - hand[1]) * u)
        size = (0.22 * h, 0.18 * h)
        return Held("box", hand, size, colour)
    if spec.obj == "read":
        mid = ((sk.hands[0][0] + sk.hands[1][0]) / 2, (sk.hands[0][1] + sk.hands[1][1]) / 2)
        return Held("open_book", (mid[0], mid[1] - 0.05 * h), (0.28 * h, 0.16 * h), colour)
    if kind == "box" and (spec.carry or spec.obj in ("lift", "putdown")):
        mid = ((sk.hands[0][0] + sk.hands[1][0]) / 2, (sk.hands[0][1] + sk.hands[1][1]) / 2)
        return Held("box", (mid[0] + sk.facing * 0.04 * h, mid[1] - 0.04 * h), size, colour)
    if spec.obj == "throw":
        tr = throw_release(a.var)
        if t > tr:
            s0 = a.skeleton(tr)
            dt = t - tr
            x = s0.hands[0][0] + sk.facing * 260.0 * dt
            y = s0.hands[0][1] - 110.0 * dt + 380.0 * dt * dt
            return Held("ball", (x, y), size, colour)
    return Held(kind, (hand[0], hand[1] - 0.03 * h), size, colour)


def _draw_held(cv: Canvas, obj: Held) -> None:
    x1, y1, x2, y2 = obj.box
    if obj.kind == "ball":
        cv.disc(obj.centre, obj.size[0] / 2, obj.colour)
    elif obj.kind == "open_book":
        cv.rect(obj.box, (238, 234, 220), outline=obj.colour)
        cv.seg(((x1 + x2) / 2, y1), ((x1 + x2) / 2, y2), 0.6, obj.colour)
    elif obj.kind == "box":
        cv.rect(obj.box, obj.colour, outline=_shade(obj.colour, 0.6))
        cv.seg((x1, (y1 + y2) / 2), (x2, (y1 + y2) / 2), 0.7, _shade(obj.colour, 0.75))
    else:
        cv.rect(obj.box, obj.colour, outline=_shade(obj.colour, 0.55))


def draw_actor(cv: Canvas, a: Actor, sk: Skeleton, held: Held | None) -> None:
    """Draw one person: far limbs first and darker, near limbs and head on top."""
    app, b = a.app, a.body
    top, bottom, skin = TOP_COLOURS[app.top], BOTTOM_COLOURS[app.bottom], app.skin
    chair = _chair_geometry(a, sk)
    if chair:
        for part in chair.values():
            cv.rect(part, a.chair_colour)
    if app.bag == "backpack":
        cv.poly(_backpack(a, sk), app.bag_colour)
    lw = b.limb_w

    def leg(j: int, k: float) -> None:
        cv.seg(sk.hip, sk.knees[j], lw * 1.1, _shade(bottom, k))
        cv.seg(sk.knees[j], sk.feet[j], lw, _shade(bottom, k))
        cv.disc(sk.feet[j], lw * 0.62, _SHOE)

    def arm(j: int, k: float) -> None:
        cv.seg(sk.neck, sk.elbows[j], lw * 0.95, _shade(top, k))
        cv.seg(sk.elbows[j], sk.hands[j], lw * 0.85, _shade(top, k))
        cv.disc(sk.hands[j], lw * 0.5, _shade(skin, k))

    leg(1, 0.78)
    arm(1, 0.78)
    cv.seg(sk.hip, sk.neck, b.torso_w, top)
    waist = (sk.hip[0] + (sk.neck[0] - sk.hip[0]) * 0.12, sk.hip[1] + (sk.neck[1] - sk.hip[1]) * 0.12)
    cv.seg(sk.hip, waist, b.torso_w * 0.95, bottom)
    leg(0, 1.0)
    if app.bag == "bag":
        (ux, uy), _ = _axes(sk)
        strap_top = (sk.neck[0] - ux * 0.1 * b.torso, sk.neck[1] - uy * 0.1 * b.torso)
        bag = _bag(a, sk)
        cv.seg(strap_top, bag[0], 0.6, _shade(app.bag_colour, 0.8))
        cv.poly(bag, app.bag_colour)
    _draw_head(cv, a, sk)
    if held is not None and held.kind in ("box", "open_book"):
        _draw_held(cv, held)
    arm(0, 1.0)
    if held is not None and held.kind not in ("box", "open_book"):
        _draw_held(cv, held)


def _draw_head(cv: Canvas, a: Actor, sk: Skeleton) -> None:
    app, r = a.app, a.body.head_r
    hx, hy = sk.head
    g = a.gaze
    cv.disc((hx, hy), r, app.skin)
    if g:  # a head turned towards someone: nose on that side, hair on the back of the head
        cv.disc((hx + g * 0.95 * r, hy + 0.12 * r), 0.3 * r, app.skin)
        if app.hat is None:
            start, end = (95, 280) if g > 0 else (260, 445)
            cv.chord((hx, hy), r, start, end, app.hair)
    elif app.hat is None:  # facing the camera: hair on top only
        cv.chord((hx, hy), r, 190, 350, app.hair)
    pose = sk.pose
    ey = hy - 0.12 * r + (0.25 * r if pose.look_down else 0.0)
    eyes = [(hx + g * 0.5 * r, ey)] if g else [(hx - 0.38 * r, ey), (hx + 0.38 * r, ey)]
    if app.glasses:
        x1, x2 = (hx - 0.85 * r, hx + 0.85 * r) if g == 0 else sorted((hx - g * 0.05 * r, hx + g * 1.0 * r))
        cv.rect((x1, ey - 0.22 * r, x2, ey + 0.22 * r), _DARK)
        for e in eyes:
            cv.disc(e, 0.12 * r, (150, 170, 190))
    else:
        for e in eyes:
            cv.disc(e, 0.16 * r, _DARK)
    mx, my = hx + g * 0.42 * r, hy + 0.5 * r
    if pose.mouth > 0.5:
        cv.disc((mx, my), 0.24 * r, (110, 30, 30))
    else:
        cv.seg((mx - 0.18 * r, my), (mx + 0.18 * r, my), 0.35, (110, 50, 45))
    hat = _hat_box(a, sk)
    if hat is not None:
        col = app.hat_colour
        if app.hat == "hat":
            cv.rect((hx - 0.95 * r, hy - 1.9 * r, hx + 0.95 * r, hy - 0.6 * r), col)
            cv.rect((hx - 1.45 * r, hy - 0.85 * r, hx + 1.45 * r, hy - 0.55 * r), _shade(col, 0.8))
        else:
            cv.chord((hx, hy - 0.15 * r), r * 1.02, 180, 360, col)
            d = g if g else a.facing
            x1, x2 = sorted((hx, hx + d * 1.5 * r))
            cv.rect((x1, hy - 0.45 * r, x2, hy - 0.2 * r), _shade(col, 0.8))


# -------------------------------------------------------------------------- props, room
def draw_prop(cv: Canvas, p: Prop) -> None:
    x1, y1, x2, y2 = p.box
    c = p.colour
    if p.kind == "chair":
        seat_y = y2 - p.h * 0.5
        back_x = x1 if p.facing > 0 else x2 - 1.6
        cv.rect((back_x, y1, back_x + 1.6, y2), _shade(c, 0.85))
        cv.rect((x1, seat_y, x2, seat_y + 1.8), c)
        cv.rect((x2 - 1.4 if p.facing > 0 else x1, seat_y, (x2 if p.facing > 0 else x1 + 1.4), y2), _shade(c, 0.85))
    elif p.kind == "box" or p.kind == "crate":
        cv.rect(p.box, c, outline=_shade(c, 0.6))
        cv.seg((x1, (y1 + y2) / 2), (x2, (y1 + y2) / 2), 0.8, _shade(c, 0.7))
        if p.kind == "crate":
            cv.seg((x1, y1), (x2, y2), 0.8, _shade(c, 0.7))
    elif p.kind == "table":
        cv.rect((x1, y1, x2, y1 + 2.2), c)
        cv.rect((x1 + 1, y1, x1 + 2.6, y2), _shade(c, 0.8))
        cv.rect((x2 - 2.6, y1, x2 - 1, y2), _shade(c, 0.8))
        for k, item in enumerate(p.items):
            ix = x1 + (k + 1) * p.w / (len(p.items) + 1)
            if item == "cup":
                cv.rect((ix - 2, y1 - 4.5, ix + 2, y1), (232, 232, 228), outline=(120, 120, 120))
            else:
                cv.rect((ix - 4, y1 - 2.2, ix + 4, y1), (150, 40, 40))
    elif p.kind == "plant":
        cv.poly([(x1 + 2, y2 - 10), (x2 - 2, y2 - 10), (x2 - 3.5, y2), (x1 + 3.5, y2)], (150, 85, 50))
        for k in range(5):
            ang = math.pi * (0.15 + 0.175 * k)
            cx = p.x + math.cos(ang) * p.w * 0.45
            cy = y2 - 10 - math.sin(ang) * (p.h - 12) * 0.8
            cv.disc((cx, cy), p.w * 0.32, _shade(c, 0.85 + 0.05 * k))
    elif p.kind == "pillar":
        cv.rect(p.box, c)
        cv.rect((x2 - 2.5, y1, x2, y2), _shade(c, 0.8))


def prop_items(p: Prop) -> list[tuple[str, Box]]:
    """Detector-visible parts of a prop: the prop itself and what stands on a table."""
    out = [(p.kind, p.box)]
    x1, y1, _, _ = p.box
    for k, item in enumerate(p.items):
        ix = x1 + (k + 1) * p.w / (len(p.items) + 1)
        out.append(("cup", (ix - 2, y1 - 4.5, ix + 2, y1)) if item == "cup" else ("book", (ix - 4, y1 - 2.2, ix + 4, y1)))
    return out


def draw_background(scene: Scene) -> Image.Image:
    """The room on a canvas ``MARGIN`` wider on every side, at supersampled resolution."""
    s, m = SUPERSAMPLE, MARGIN
    bg = scene.background
    img = Image.new("RGB", ((scene.width + 2 * m) * s, (scene.height + 2 * m) * s), bg.wall)
    cv = Canvas(img, m, m)
    cv.rect((-m, bg.horizon, scene.width + m, scene.height + m), bg.floor)
    cv.rect((-m, bg.horizon - 1.5, scene.width + m, bg.horizon + 0.5), _shade(bg.wall, 0.7))
    for kind, box, c in bg.clutter:
        x1, y1, x2, y2 = box
        if kind == "window":
            cv.rect(box, c, outline=(235, 235, 235))
            cv.seg(((x1 + x2) / 2, y1), ((x1 + x2) / 2, y2), 1.0, (235, 235, 235))
            cv.seg((x1, (y1 + y2) / 2), (x2, (y1 + y2) / 2), 1.0, (235, 235, 235))
        elif kind == "picture":
            cv.rect(box, c, outline=_shade(c, 0.5))
        elif kind == "shelf":
            cv.rect((x1, y2 - 1.5, x2, y2), c)
            for k in range(int((x2 - x1) // 5)):
                h = 3 + (k * 7) % 5
                cv.rect((x1 + 1 + 5 * k, y2 - 1.5 - h, x1 + 4 + 5 * k, y2 - 1.5), _shade(c, 0.7 + 0.1 * (k % 3)))
        elif kind == "door":
            cv.rect(box, c, outline=_shade(c, 0.7))
            cv.disc((x2 - 3, (y1 + y2) / 2), 0.9, (200, 190, 120))
        elif kind == "rug":
            cv.rect(box, c, outline=_shade(c, 0.8))
    return img


# ----------------------------------------------------------------------------- frames
def skeletons(scene: Scene, t: float) -> list[Skeleton]:
    return [a.skeleton(t) for a in scene.actors]


def render_frame(scene: Scene, t: float, frame_seed: int, background: Image.Image | None = None) -> np.ndarray:
    """One RGB uint8 frame (H, W, 3) at clip time ``t``."""
    s, m = SUPERSAMPLE, MARGIN
    bg = background if background is not None else draw_background(scene)
    ox, oy = scene.nuisance.offset(t)
    ox, oy = round(ox * s) / s, round(oy * s) / s
    left, top = int((m - ox) * s), int((m - oy) * s)
    img = bg.crop((left, top, left + scene.width * s, top + scene.height * s))
    cv = Canvas(img, ox, oy)
    sks = skeletons(scene, t)
    items: list[tuple[float, int, object]] = [(p.ground, 0, p) for p in scene.props if not p.occluder]
    items += [(a.ground, 1, i) for i, a in enumerate(scene.actors)]
    items.sort(key=lambda it: (it[0], it[1]))
    for _, kind, obj in items:
        if kind == 0:
            draw_prop(cv, obj)  # type: ignore[arg-type]
        else:
            i = int(obj)  # type: ignore[arg-type]
            draw_actor(cv, scene.actors[i], sks[i], held_object(scene, i, t, sks))
    for p in scene.props:
        if p.occluder:
            draw_prop(cv, p)
    small = np.array(img.reduce(s), dtype=np.float32)
    return _nuisance(scene, small, t, frame_seed)


@functools.lru_cache(maxsize=4)
def _noise_bank(seed: int, h: int, w: int) -> np.ndarray:
    """Standard-normal noise a little larger than a frame; frames read shifted windows of it
    (one draw per clip instead of one per frame: noise was most of the rendering time)."""
    rng = np.random.default_rng([seed, 104729])
    bank = rng.standard_normal((h + _NOISE_PAD, w + _NOISE_PAD, 3), dtype=np.float32)
    bank.flags.writeable = False
    return bank


_NOISE_PAD = 24


def _nuisance(scene: Scene, frame: np.ndarray, t: float, frame_seed: int) -> np.ndarray:
    nu = scene.nuisance
    rng = np.random.default_rng([scene.seed, frame_seed])
    frame *= np.float32(nu.gain(t)) * np.asarray(nu.tint, dtype=np.float32)
    if nu.blur_prob > 0 and rng.random() < nu.blur_prob:
        k = int(rng.integers(2, nu.blur_max + 2))
        pad = np.pad(frame, ((0, 0), (k // 2, k - 1 - k // 2), (0, 0)), mode="edge")
        frame = sum(pad[:, i:i + frame.shape[1]] for i in range(k)) / np.float32(k)
    if nu.noise > 0:
        h, w = frame.shape[:2]
        dy, dx = (int(v) for v in rng.integers(0, _NOISE_PAD, 2))
        frame += np.float32(nu.noise) * _noise_bank(scene.seed, h, w)[dy:dy + h, dx:dx + w]
    frame += np.float32(0.5)
    np.clip(frame, 0, 255, out=frame)
    return frame.astype(np.uint8)


@dataclass
class KeyFrameGeometry:
    """What is where on the key frame (image coordinates, render pixels, jitter applied)."""

    person_boxes: list[Box]
    occlusion: list[float]  # fraction of each person's box hidden by people/occluders in front
    objects: list[tuple[str, Box]]  # detector-visible objects: props, chairs under people, held things
    chairs_occupied: list[tuple[int, Box]]  # (actor index, chair box) for seated people
    offset: tuple[float, float]  # camera shift applied to the world on this frame


def key_frame_geometry(scene: Scene) -> KeyFrameGeometry:
    t = KEY_T
    ox, oy = scene.nuisance.offset(t)
    s = SUPERSAMPLE
    ox, oy = round(ox * s) / s, round(oy * s) / s

    def shift(b: Box) -> Box:
        return (b[0] + ox, b[1] + oy, b[2] + ox, b[3] + oy)

    sks = skeletons(scene, t)
    boxes = [shift(person_box(a, sk)) for a, sk in zip(scene.actors, sks)]
    objects: list[tuple[str, Box]] = []
    for p in scene.props:
        if not p.occluder:
            objects += [(k, shift(b)) for k, b in prop_items(p)]
    chairs: list[tuple[int, Box]] = []
    for i, (a, sk) in enumerate(zip(scene.actors, sks)):
        geo = _chair_geometry(a, sk)
        if geo:
            box = shift(_union(list(geo.values())))
            chairs.append((i, box))
            objects.append(("chair", box))
        held = held_object(scene, i, t, sks)
        if held is not None:
            kind = "book" if held.kind == "open_book" else held.kind
            objects.append((kind, shift(held.box)))
    # occlusion: rasterise boxes at render resolution, front-most last
    order = sorted(range(len(scene.actors)), key=lambda i: scene.actors[i].ground)
    rank = {i: k for k, i in enumerate(order)}
    occl = []
    hgt, wid = scene.height, scene.width
    occluders = [shift(p.box) for p in scene.props if p.occluder]
    for i, b in enumerate(boxes):
        x1, y1 = max(0, int(b[0])), max(0, int(b[1]))
        x2, y2 = min(wid, int(math.ceil(b[2]))), min(hgt, int(math.ceil(b[3])))
        if x2 <= x1 or y2 <= y1:
            occl.append(1.0)
            continue
        mask = np.zeros((y2 - y1, x2 - x1), bool)
        front = [boxes[j] for j in range(len(boxes)) if rank[j] > rank[i]] + occluders
        for f in front:
            fx1, fy1 = max(x1, int(f[0])), max(y1, int(f[1]))
            fx2, fy2 = min(x2, int(math.ceil(f[2]))), min(y2, int(math.ceil(f[3])))
            if fx2 > fx1 and fy2 > fy1:
                mask[fy1 - y1:fy2 - y1, fx1 - x1:fx2 - x1] = True
        full = (b[2] - b[0]) * (b[3] - b[1])
        visible_area = (~mask).sum()
        occl.append(float(1.0 - visible_area / max(full, 1e-6)))
    return KeyFrameGeometry(person_boxes=boxes, occlusion=occl, objects=objects, chairs_occupied=chairs,
                            offset=(ox, oy))
