"""Scene layout: who stands where, facing whom, among which props, under which nuisances.

A *video* fixes a room (wall, floor, clutter) and a cast; each of its clips (key frames) draws
2-6 cast members, their actions (:mod:`.actions`), a layout and props. Conversation partners and
pair interactions are placed side by side facing each other at the distance their gesture needs
(a hand shake at arm's length, a hug closer); everyone else is spread over the frame. Coordinates
are render pixels of a ``WIDTH`` x ``HEIGHT`` frame, y down, before camera jitter.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np

from .actions import DEFAULT_RATES, ActionSpec, Rates, sample_actions
from .motion import KEY_T, Skeleton, action_pose, skeleton
from .people import RGB, Appearance, Body, sample_cast

WIDTH, HEIGHT = 160, 120
#: Number of people in a clip and its probability.
PEOPLE_PER_CLIP: dict[int, float] = {2: 0.22, 3: 0.30, 4: 0.24, 5: 0.14, 6: 0.10}
CAST_SIZE = 6
GROUND_RANGE = (0.80 * HEIGHT, 0.975 * HEIGHT)
#: Walking / running speed in body heights per clip (3 s).
SPEED = {"walk": 1.0, "run": 2.6}


def _muted(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return (int(r * 255), int(g * 255), int(b * 255))


@dataclass
class Background:
    """A room: wall, floor and clutter drawn once per video (muted so clothes stand out)."""

    wall: RGB
    floor: RGB
    horizon: float
    clutter: list[tuple[str, tuple[float, float, float, float], RGB]]


def sample_background(rng: np.random.Generator) -> Background:
    wall = _muted(rng, (0.05, 0.3), (0.55, 0.85))
    floor = _muted(rng, (0.1, 0.35), (0.3, 0.55))
    horizon = float(rng.uniform(0.5, 0.62) * HEIGHT)
    clutter: list[tuple[str, tuple[float, float, float, float], RGB]] = []
    for _ in range(int(rng.integers(0, 3))):
        w, h = rng.uniform(18, 34), rng.uniform(14, 26)
        x, y = rng.uniform(0, WIDTH - w), rng.uniform(4, max(5.0, horizon - h - 6))
        clutter.append(("window", (x, y, x + w, y + h), _muted(rng, (0.1, 0.3), (0.75, 0.95))))
    for _ in range(int(rng.integers(0, 4))):
        w, h = rng.uniform(6, 16), rng.uniform(6, 14)
        x, y = rng.uniform(0, WIDTH - w), rng.uniform(4, max(5.0, horizon - h - 4))
        clutter.append(("picture", (x, y, x + w, y + h), _muted(rng, (0.1, 0.45), (0.3, 0.8))))
    if rng.random() < 0.5:
        w = rng.uniform(20, 40)
        x, y = rng.uniform(0, WIDTH - w), rng.uniform(10, horizon - 12)
        clutter.append(("shelf", (x, y, x + w, y + 10), _muted(rng, (0.2, 0.4), (0.3, 0.5))))
    if rng.random() < 0.4:
        w = rng.uniform(16, 22)
        x = rng.uniform(0, WIDTH - w)
        clutter.append(("door", (x, horizon - 44, x + w, horizon), _muted(rng, (0.1, 0.35), (0.25, 0.5))))
    if rng.random() < 0.4:
        w, h = rng.uniform(40, 80), rng.uniform(6, 14)
        x, y = rng.uniform(-10, WIDTH - w + 10), rng.uniform(horizon + 8, HEIGHT - h)
        clutter.append(("rug", (x, y, x + w, y + h), _muted(rng, (0.15, 0.4), (0.3, 0.6))))
    return Background(wall=wall, floor=floor, horizon=horizon, clutter=clutter)


@dataclass
class Video:
    """What a video's clips share: the room and the cast (person ids index the cast)."""

    video_id: str
    background: Background
    cast: list[Appearance]


@dataclass
class Actor:
    """One person in one clip."""

    pid: int
    app: Appearance
    body: Body
    spec: ActionSpec
    x: float = 0.0  # hip x at the key frame
    ground: float = 0.0  # floor line under the feet
    facing: int = 1  # +1 faces right, -1 faces left
    gaze: int = 0  # where the eyes look: -1 left, 0 camera, +1 right
    phase: float = 0.0  # cycle phase of periodic motions
    var: float = 0.0  # per-person variant (fall onset, kneel vs squat, ...)
    speed: float = 0.0  # horizontal speed, pixels per clip (signed)
    chair_colour: RGB = (120, 80, 50)

    def skeleton(self, t: float) -> Skeleton:
        pose = action_pose(self.spec, t, self.phase, self.var)
        return skeleton(self.body, pose, self.facing, self.x + self.speed * (t - KEY_T), self.ground)


@dataclass
class Prop:
    """A static object on the floor (chair, box, table) or a foreground occluder."""

    kind: str
    x: float  # centre
    ground: float  # bottom
    w: float
    h: float
    colour: RGB
    facing: int = 1
    items: tuple[str, ...] = ()  # what stands on a table
    occluder: bool = False

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x - self.w / 2, self.ground - self.h, self.x + self.w / 2, self.ground)


@dataclass
class Nuisance:
    """Camera jitter, lighting drift, motion blur and sensor noise, all scaled by difficulty."""

    difficulty: float
    jitter: float  # amplitude in pixels
    jitter_phase: tuple[float, float, float, float]
    light: float  # brightness swing (fraction)
    light_phase: float
    tint: tuple[float, float, float]
    blur_prob: float
    blur_max: int
    noise: float

    def offset(self, t: float) -> tuple[float, float]:
        p = self.jitter_phase
        ox = self.jitter * (math.sin(2 * math.pi * (1.3 * t + p[0])) + 0.5 * math.sin(2 * math.pi * (3.7 * t + p[1])))
        oy = 0.6 * self.jitter * (math.sin(2 * math.pi * (1.1 * t + p[2])) + 0.5 * math.sin(2 * math.pi * (4.1 * t + p[3])))
        return ox, oy

    def gain(self, t: float) -> float:
        return 1.0 + self.light * math.sin(2 * math.pi * (0.5 * t + self.light_phase))


def sample_nuisance(rng: np.random.Generator, d: float) -> Nuisance:
    return Nuisance(
        difficulty=d, jitter=2.5 * d * rng.uniform(0.5, 1.0),
        jitter_phase=tuple(float(v) for v in rng.random(4)),  # type: ignore[arg-type]
        light=0.3 * d * rng.uniform(0.3, 1.0), light_phase=float(rng.random()),
        tint=tuple(float(v) for v in 1 + 0.08 * d * rng.uniform(-1, 1, 3)),  # type: ignore[arg-type]
        blur_prob=0.35 * d, blur_max=1 + int(round(3 * d)), noise=4.0 * d,
    )


@dataclass
class Scene:
    """Everything needed to render one clip and to describe its people."""

    video_id: str
    timestamp: int
    background: Background
    actors: list[Actor]
    props: list[Prop]
    nuisance: Nuisance
    seed: int  # per-frame randomness (noise, blur)
    width: int = WIDTH
    height: int = HEIGHT
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------- layout
def _extent(actor: Actor) -> tuple[float, float]:
    """(back, front) reach around the hip at any time of the clip, facing-relative, pixels."""
    h = actor.body.height
    pose = actor.spec.pose
    back, front = {"sit": (0.22, 0.45), "lie": (0.6, 0.5), "getup": (0.6, 0.5), "bend": (0.22, 0.5),
                   "crouch": (0.25, 0.38), "fall": (0.5, 0.9), "dance": (0.35, 0.35),
                   "jump": (0.28, 0.3)}.get(pose, (0.2, 0.3))
    if actor.spec.held or actor.spec.special in ("handshake", "give", "take", "fight", "hug"):
        front = max(front, 0.42)
    if actor.app.bag == "backpack":
        back = max(back, 0.28)
    run = abs(actor.speed)
    return back * h + run * KEY_T, front * h + run * (1 - KEY_T)


def _left_right(actor: Actor) -> tuple[float, float]:
    back, front = _extent(actor)
    return (-back, front) if actor.facing > 0 else (-front, back)


def _pair_distance(a: Actor, b: Actor, special: str | None, rng: np.random.Generator) -> float:
    ha, hb = a.body.height, b.body.height
    if special == "hug":
        return 0.1 * (ha + hb)
    if special in ("handshake", "fight", "give"):
        return 0.29 * (ha + hb)
    _, ra = _left_right(a)
    lb, _ = _left_right(b)
    return ra - lb + rng.uniform(-0.05, 0.2) * (ha + hb) / 2


def layout(rng: np.random.Generator, actors: list[Actor]) -> None:
    """Set x, ground, facing and gaze of every actor (in place)."""
    n = len(actors)
    groups: dict[int, list[int]] = {}
    for i, a in enumerate(actors):
        if a.spec.group is not None:
            groups.setdefault(a.spec.group, []).append(i)
    units: list[list[int]] = [list(g) for g in groups.values()]
    units += [[i] for i in range(n) if actors[i].spec.group is None]
    for i, a in enumerate(actors):
        if a.spec.pose in SPEED:
            a.facing = 1 if rng.random() < 0.5 else -1
            a.speed = a.facing * SPEED[a.spec.pose] * a.body.height * rng.uniform(0.8, 1.2)
        else:
            a.facing = 1 if rng.random() < 0.5 else -1
    placed: list[tuple[list[int], list[float], float, float]] = []  # members, offsets, left, right
    for unit in units:
        order = [int(i) for i in rng.permutation(unit)]
        offsets = [0.0]
        if len(order) > 1:
            special = actors[order[0]].spec.special
            special = "give" if special in ("give", "take") else special
            for k, i in enumerate(order):
                if k == 0:
                    actors[i].facing = 1
                elif k == len(order) - 1:
                    actors[i].facing = -1
            if len(order) == 3:  # the middle one faces its partner (or the talker)
                mid = actors[order[1]]
                target = mid.spec.partner
                mid.facing = -1 if target == order[0] else 1
                talker = next(i for i in order if actors[i].spec.social == "talk")
                if talker != order[1]:  # an end talker addresses the middle listener
                    actors[talker].spec.partner = order[1]
                    if actors[talker].spec.watch is not None:
                        actors[talker].spec.watch = order[1]
            for k in range(1, len(order)):
                a, b = actors[order[k - 1]], actors[order[k]]
                offsets.append(offsets[-1] + _pair_distance(a, b, special, rng))
        lr = [_left_right(actors[i]) for i in order]
        left = min(o + l for o, (l, _) in zip(offsets, lr))
        right = max(o + r for o, (_, r) in zip(offsets, lr))
        placed.append((order, offsets, left, right))
    perm = rng.permutation(len(placed))
    placed = [placed[int(k)] for k in perm]
    widths = np.array([r - l for _, _, l, r in placed])
    free = (WIDTH - 4) - widths.sum()
    if free >= 0:
        gaps = rng.dirichlet(np.ones(len(placed) + 1)) * free
    else:  # crowded: overlap, as people do in a crowd
        gaps = np.concatenate([[0.0], np.full(len(placed) - 1, free / max(1, len(placed) - 1)), [0.0]])
    cursor = 2.0 + gaps[0]
    for k, (order, offsets, left, right) in enumerate(placed):
        ground = float(rng.uniform(*GROUND_RANGE))
        origin = cursor - left
        for i, off in zip(order, offsets):
            actors[i].x = float(origin + off)
            actors[i].ground = ground + float(rng.uniform(-0.8, 0.8))
        cursor += (right - left) + gaps[k + 1]
    # eyes follow the watched person; idle watchers also turn their body towards them
    for i, a in enumerate(actors):
        if a.spec.watch is not None:
            target = actors[a.spec.watch]
            a.gaze = 1 if target.x >= a.x else -1
            if a.spec.group is None and a.spec.pose not in SPEED and a.spec.special is None:
                a.facing = a.gaze
        else:
            a.gaze = 0


def _place_props(rng: np.random.Generator, actors: list[Actor]) -> list[Prop]:
    props: list[Prop] = []
    anchors = [a for a in actors if a.spec.pose not in ("walk", "run", "fall", "lie", "getup")]

    def spot(w: float) -> tuple[float, float]:
        if anchors and rng.random() < 0.6:
            a = anchors[int(rng.integers(len(anchors)))]
            left, right = _left_right(a)
            side = 1 if rng.random() < 0.5 else -1
            edge = right if side > 0 else -left
            x = a.x + side * (edge + rng.uniform(0.5, 3.0) + w / 2)
            return float(x), float(a.ground + rng.uniform(-2.0, 0.5))
        return float(rng.uniform(w / 2, WIDTH - w / 2)), float(rng.uniform(*GROUND_RANGE))

    for _ in range(int(rng.choice(3, p=[0.45, 0.35, 0.2]))):
        w = float(rng.uniform(11, 14))
        x, g = spot(w)
        props.append(Prop("chair", x, g, w, float(rng.uniform(20, 24)), _muted(rng, (0.3, 0.6), (0.3, 0.6)),
                          facing=1 if rng.random() < 0.5 else -1))
    for _ in range(int(rng.choice(3, p=[0.55, 0.3, 0.15]))):
        w = float(rng.uniform(9, 14))
        x, g = spot(w)
        props.append(Prop("box", x, g, w, float(rng.uniform(7, 11)), _muted(rng, (0.35, 0.6), (0.45, 0.7))))
    if rng.random() < 0.3:
        w = float(rng.uniform(24, 34))
        x, g = spot(w)
        items = tuple(str(k) for k in rng.choice(["cup", "book"], size=int(rng.integers(0, 3))))
        props.append(Prop("table", x, g, w, float(rng.uniform(14, 17)), _muted(rng, (0.3, 0.55), (0.3, 0.55)),
                          items=items))
    return props


def _place_occluders(rng: np.random.Generator, d: float) -> list[Prop]:
    occ: list[Prop] = []
    for _ in range(min(2, int(rng.poisson(0.7 * d)))):
        kind = str(rng.choice(["plant", "pillar", "crate"]))
        w = float(rng.uniform(9, 16))
        h = {"plant": rng.uniform(28, 42), "pillar": HEIGHT + 4.0, "crate": rng.uniform(18, 30)}[kind]
        colour = {"plant": (46, 120, 52), "pillar": _muted(rng, (0.05, 0.2), (0.45, 0.7)),
                  "crate": (140, 100, 60)}[kind]
        occ.append(Prop(kind, float(rng.uniform(0, WIDTH)), HEIGHT + 2.0, w, float(h), colour, occluder=True))
    return occ


def make_video(rng: np.random.Generator, video_id: str, share: float) -> Video:
    return Video(video_id=video_id, background=sample_background(rng),
                 cast=sample_cast(rng, CAST_SIZE, share))


def make_scene(rng: np.random.Generator, video: Video, timestamp: int, difficulty: float,
               rates: Rates = DEFAULT_RATES) -> Scene:
    """A clip of ``video`` at ``timestamp``: people, actions, layout, props, nuisances."""
    sizes = list(PEOPLE_PER_CLIP)
    n = int(rng.choice(sizes, p=[PEOPLE_PER_CLIP[k] for k in sizes]))
    pids = sorted(int(i) for i in rng.choice(len(video.cast), size=n, replace=False))
    specs = sample_actions(rng, n, rates)
    actors = []
    for pid, spec in zip(pids, specs):
        app = video.cast[pid]
        actors.append(Actor(pid=pid, app=app, body=Body.of(app), spec=spec,
                            phase=float(rng.random()), var=float(rng.random()),
                            chair_colour=_muted(rng, (0.3, 0.6), (0.3, 0.6))))
    layout(rng, actors)
    props = _place_props(rng, actors) + _place_occluders(rng, difficulty)
    return Scene(video_id=video.video_id, timestamp=timestamp, background=video.background,
                 actors=actors, props=props, nuisance=sample_nuisance(rng, difficulty),
                 seed=int(rng.integers(2**31)))
