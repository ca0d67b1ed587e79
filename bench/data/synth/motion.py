"""Articulated figures in motion: each action becomes a pose trajectory over the clip.

A figure is a 2-D skeleton (hip, neck, head, elbows, hands, knees, feet) posed by a handful of
angles (:class:`Pose`). Actions are functions of clip time ``t`` in [0, 1] (window index / 89)
that set those angles, so an action is only recognisable from how the pose *changes*: walking is
displacement plus a leg-swing phase, drinking is a cup travelling to the mouth and back, waving is
a raised forearm swinging, a fall is the body rotating to the floor. Angles are in radians; arm
and leg angles are measured from straight down, positive towards the direction the body faces.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from .actions import ActionSpec
from .people import Body

KEY_T = 45 / 89  # clip time of the annotated key frame (window index 45 of 0..89)
Point = tuple[float, float]


@dataclass
class Pose:
    """Joint angles and a few extras; index 0 of each pair is the near (camera-side) limb."""

    rot: float = 0.0  # whole-body rotation about the hip (+pi/2: face down, -pi/2: on the back)
    tilt: float = 0.0  # torso lean forward from vertical
    thigh: list[float] = field(default_factory=lambda: [0.04, -0.04])
    knee: list[float] = field(default_factory=lambda: [0.03, 0.03])
    arm: list[float] = field(default_factory=lambda: [0.08, -0.06])
    elbow: list[float] = field(default_factory=lambda: [0.15, 0.1])
    lift: float = 0.0  # airborne height, as a fraction of body height
    dx: float = 0.0  # displacement from the key-frame position, in body heights (facing-relative)
    nod: float = 0.0  # head drop, in head radii
    mouth: float = 0.0  # 0 closed .. 1 open
    look_down: bool = False


def _lerp(a: Pose, b: Pose, u: float) -> Pose:
    out = Pose()
    for f in fields(Pose):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, list):
            setattr(out, f.name, [x + (y - x) * u for x, y in zip(va, vb)])
        elif isinstance(va, bool):
            setattr(out, f.name, va if u < 0.5 else vb)
        else:
            setattr(out, f.name, va + (vb - va) * u)
    return out


def _smooth(u: float) -> float:
    u = min(1.0, max(0.0, u))
    return u * u * (3 - 2 * u)


def _wave(t: float, freq: float, phase: float) -> float:
    return math.sin(2 * math.pi * (freq * t + phase))


# ------------------------------------------------------------------------------ body poses
def _stand(t: float, ph: float) -> Pose:
    return Pose(tilt=0.02 * _wave(t, 0.4, ph))


def _sit() -> Pose:
    return Pose(tilt=-0.06, thigh=[1.5, 1.45], knee=[1.5, 1.45], arm=[0.35, 0.25], elbow=[0.9, 0.8])


def _crouch(kneel: bool) -> Pose:
    if kneel:
        return Pose(tilt=0.1, thigh=[1.5, -0.1], knee=[1.5, 1.62], arm=[0.6, 0.4], elbow=[0.6, 0.5])
    return Pose(tilt=0.45, thigh=[1.75, 1.6], knee=[2.5, 2.4], arm=[0.9, 0.7], elbow=[0.4, 0.5])


def _lie() -> Pose:
    return Pose(rot=-math.pi / 2, thigh=[0.03, -0.03], knee=[0.02, 0.02], arm=[0.12, 0.05],
                elbow=[0.1, 0.1])


def _walk(t: float, ph: float, run: bool) -> Pose:
    cyc, amp = (7.0, 0.8) if run else (4.5, 0.42)
    a = 2 * math.pi * (cyc * t + ph)
    knees = [(0.3 if run else 0.12) + (1.1 if run else 0.45) * max(0.0, math.sin(a + k * math.pi + 1.2))
             for k in (0, 1)]
    swing = math.sin(a)
    return Pose(
        tilt=0.25 if run else 0.06,
        thigh=[0.15 * run + amp * swing, 0.15 * run - amp * swing], knee=knees,
        arm=[-(0.6 if run else 0.35) * swing, (0.6 if run else 0.35) * swing],
        elbow=[1.5, 1.5] if run else [0.25, 0.25],
        lift=0.05 * abs(swing) if run else 0.0,
    )


def _bend(t: float, ph: float) -> Pose:
    return Pose(tilt=1.15 + 0.08 * _wave(t, 0.7, ph), thigh=[-0.12, -0.16], knee=[0.05, 0.05],
                arm=[0.05, 0.0], elbow=[0.1, 0.1])


def _jump(t: float, ph: float) -> Pose:
    u = (2.2 * t + ph) % 1.0
    if u < 0.45:
        s = math.sin(math.pi * u / 0.45)
        return Pose(lift=0.32 * s, thigh=[0.5 * s, 0.4 * s], knee=[0.9 * s, 0.8 * s],
                    arm=[2.6, 2.5], elbow=[0.2, 0.2])
    return Pose(tilt=0.3, thigh=[0.9, 0.85], knee=[1.6, 1.5], arm=[-0.5, -0.45], elbow=[0.2, 0.2])


def _dance(t: float, ph: float) -> Pose:
    a = 2 * math.pi * (2.5 * t + ph)
    s = math.sin(a)
    return Pose(rot=0.12 * s, tilt=0.1 * math.sin(a / 2), arm=[2.4 + 0.6 * s, 2.4 - 0.6 * s],
                elbow=[0.5, 0.5], thigh=[0.5 * max(0.0, s), 0.5 * max(0.0, -s)],
                knee=[0.8 * max(0.0, s), 0.8 * max(0.0, -s)], lift=0.04 * abs(s),
                dx=0.05 * math.sin(a / 2))


def _fall(t: float, var: float) -> Pose:
    t0 = 0.30 + 0.12 * var
    u = _smooth((t - t0) / 0.22)
    down = Pose(rot=math.pi / 2, arm=[1.6, 1.4], elbow=[0.3, 0.3], thigh=[0.1, -0.1], knee=[0.2, 0.3])
    up = Pose(tilt=0.2 * _smooth((t - t0 + 0.1) / 0.1))
    pose = _lerp(up, down, u)
    pose.knee = [k + 2.4 * u * (1 - u) for k in pose.knee]
    pose.dx = 0.35 * u
    return pose


def _getup(t: float, var: float) -> Pose:
    t0 = 0.20 + 0.12 * var
    u = min(1.0, max(0.0, (t - t0) / 0.45))
    floor_sit = Pose(tilt=0.25, thigh=[1.57, 1.5], knee=[0.1, 0.2], arm=[-0.3, -0.4], elbow=[0.1, 0.1])
    chain = (_lie(), floor_sit, _crouch(False), Pose())
    k = min(2, int(u * 3))
    return _lerp(chain[k], chain[k + 1], _smooth(u * 3 - k))


def base_pose(spec: ActionSpec, t: float, ph: float, var: float) -> Pose:
    """The body pose of ``spec.pose`` at clip time ``t``."""
    p = spec.pose
    if p == "stand":
        return _stand(t, ph)
    if p in ("walk", "run"):
        return _walk(t, ph, run=p == "run")
    if p == "sit":
        return _sit()
    if p == "lie":
        return _lie()
    if p == "bend":
        return _bend(t, ph)
    if p == "crouch":
        return _crouch(kneel=var < 0.4)
    if p == "jump":
        return _jump(t, ph)
    if p == "dance":
        return _dance(t, ph)
    if p == "fall":
        return _fall(t, var)
    if p == "getup":
        return _getup(t, var)
    raise ValueError(f"unknown pose {p!r}")


# ---------------------------------------------------------------------------- arm overlays
def throw_release(var: float) -> float:
    """Clip time at which a thrown ball leaves the hand."""
    return 0.38 + 0.14 * var


def give_progress(t: float, var: float) -> float:
    """0 while the giver holds the object, 1 once the receiver has it."""
    return _smooth((t - (0.22 + 0.16 * var)) / 0.35)


def action_pose(spec: ActionSpec, t: float, ph: float, var: float) -> Pose:
    """Full pose: body pose, then object handling, then interaction gestures on top."""
    pose = base_pose(spec, t, ph, var)
    busy = [False, False]

    def arm(j: int, a: float, e: float) -> None:
        pose.arm[j], pose.elbow[j] = a, e
        busy[j] = True

    obj = spec.obj
    if obj == "drink":
        u = 0.5 - 0.5 * math.cos(2 * math.pi * (1.2 * t + ph))
        arm(0, 0.5 + 0.5 * u, 1.1 + 1.2 * u)
    elif obj == "phone":
        arm(0, 1.2, 2.4)
    elif obj == "read":
        arm(0, 0.7, 1.4)
        arm(1, 0.6, 1.5)
        pose.nod, pose.look_down = 0.3, True
    elif obj in ("lift", "putdown"):
        u = _smooth((t - 0.1) / 0.7)
        if obj == "putdown":
            u = 1 - u
        if spec.pose == "bend":
            pose.tilt = 1.3 - 1.0 * u
        for j in (0, 1):
            arm(j, 0.05 + 0.7 * u, 0.05 + 0.65 * u)
    elif obj == "throw":
        tr = throw_release(var)
        if t < tr - 0.25:
            arm(0, 0.3, 0.5)
        elif t < tr:
            u = _smooth((t - tr + 0.25) / 0.2)
            arm(0, 0.3 + 3.3 * u, 0.5 + 0.1 * u)
        else:
            u = _smooth((t - tr) / 0.08)
            arm(0, 3.6 - 2.5 * u, 0.6 - 0.4 * u)
    if spec.carry and obj is None:
        if spec.held == "box":
            arm(0, 0.75, 0.7)
            arm(1, 0.7, 0.75)
        else:
            arm(0, 0.45, 1.1)

    sp = spec.special
    if sp == "wave":
        arm(0, 2.7, 0.5 * _wave(t, 2.0, ph))
    elif sp == "handshake":
        arm(0, 0.9, 0.5 + 0.15 * _wave(t, 3.0, ph))
    elif sp == "hug":
        arm(0, 1.45, 0.25)
        arm(1, 1.4, 0.3)
        pose.tilt = 0.12
    elif sp == "fight":
        strike = _wave(t, 2.5, ph) > 0
        arm(0, 1.5, 0.05) if strike else arm(0, 0.4, 2.2)
        arm(1, 0.4, 2.2) if strike else arm(1, 1.5, 0.05)
        pose.tilt = max(pose.tilt, 0.15)
    elif sp in ("give", "take"):
        t0 = 0.22 + 0.16 * var
        u = give_progress(t, var)
        if t > t0 - 0.1 and u < 1.0:  # both reach out while the object changes hands
            arm(0, 1.25, 0.3)
        elif (sp == "give" and u <= 0.0) or (sp == "take" and u >= 1.0):
            arm(0, 0.6, 1.0)  # whoever has the object holds it

    if spec.social == "talk":
        pose.mouth = 1.0 if _wave(t, 3.3, ph) > 0 else 0.15
        j = 0 if not busy[0] else (1 if not busy[1] else -1)
        if j >= 0:
            arm(j, 0.55 + 0.35 * _wave(t, 1.1, ph), 0.9 + 0.5 * _wave(t, 1.1, ph + 0.2))
    elif spec.social == "listen":
        pose.nod = max(pose.nod, 0.35 * max(0.0, _wave(t, 0.9, ph)))
    return pose


# --------------------------------------------------------------------------- kinematics
@dataclass
class Skeleton:
    """Joint positions in image pixels (render scale, no camera jitter)."""

    hip: Point
    neck: Point
    head: Point
    elbows: list[Point]
    hands: list[Point]
    knees: list[Point]
    feet: list[Point]
    facing: int
    rot: float
    pose: Pose


def skeleton(body: Body, pose: Pose, facing: int, x: float, ground: float) -> Skeleton:
    """Forward kinematics: pose angles -> joint positions, feet (or body) resting on ``ground``.

    The figure is built hip-centred in a body frame (+x forward, +y down), rotated by
    ``pose.rot``, mirrored by ``facing`` and dropped so its lowest point touches the ground
    (minus ``pose.lift`` when airborne).
    """
    st, ct = math.sin(pose.tilt), math.cos(pose.tilt)
    neck = (body.torso * st, -body.torso * ct)
    hd = body.head_r * 1.15
    head = (neck[0] + hd * st, neck[1] - hd * ct + pose.nod * body.head_r)
    elbows, hands, knees, feet = [], [], [], []
    for j in (0, 1):
        a, e = pose.arm[j], pose.elbow[j]
        el = (neck[0] + body.upper_arm * math.sin(a), neck[1] + body.upper_arm * math.cos(a))
        elbows.append(el)
        hands.append((el[0] + body.forearm * math.sin(a + e), el[1] + body.forearm * math.cos(a + e)))
        th, k = pose.thigh[j], pose.knee[j]
        kn = (body.thigh * math.sin(th), body.thigh * math.cos(th))
        knees.append(kn)
        feet.append((kn[0] + body.shin * math.sin(th - k), kn[1] + body.shin * math.cos(th - k)))
    cr, sr = math.cos(pose.rot), math.sin(pose.rot)

    def place(p: Point) -> Point:
        return (p[0] * cr - p[1] * sr, p[0] * sr + p[1] * cr)

    hip = (0.0, 0.0)
    neck, head = place(neck), place(head)
    elbows = [place(p) for p in elbows]
    hands = [place(p) for p in hands]
    knees = [place(p) for p in knees]
    feet = [place(p) for p in feet]
    pad_limb, pad_torso = body.limb_w / 2, body.torso_w / 2
    lowest = max([p[1] + pad_limb for p in feet + knees]
                 + [hip[1] + pad_torso, neck[1] + pad_torso, head[1] + body.head_r])
    y0 = ground - lowest - pose.lift * body.height
    x0 = x + facing * pose.dx * body.height

    def world(p: Point) -> Point:
        return (x0 + facing * p[0], y0 + p[1])

    return Skeleton(hip=world(hip), neck=world(neck), head=world(head),
                    elbows=[world(p) for p in elbows], hands=[world(p) for p in hands],
                    knees=[world(p) for p in knees], feet=[world(p) for p in feet],
                    facing=facing, rot=pose.rot, pose=pose)
