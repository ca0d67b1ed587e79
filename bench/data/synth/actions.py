"""Which atomic actions each person of a clip performs: AVA labels plus the structure behind them.

Labels are sampled per clip, not per person, because interactions tie people together: a
conversation has one talker ("talk to") and listeners ("listen to"), and a hand shake, hug, fight
or hand-over labels both sides. The sampler is tuned (see ``docs/synth.md``) so the per-person
prevalence of each rendered class follows RefAVA's training prevalence (ravar-spec §2.5): most
people stand or sit and watch or listen to someone, a long tail does everything else.

Every person of a clip gets a different label set, so a model that ignores the sentence cannot
recover the referred person's labels from the clip alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...classes import REFAVA_TRAIN_COUNTS, REFAVA_TRAIN_SIZE

#: Body pose / movement -> AVA id. Exactly one per person.
POSE_IDS: dict[str, int] = {
    "stand": 12, "sit": 11, "walk": 14, "run": 10, "bend": 1, "crouch": 3, "lie": 8, "jump": 7,
    "fall": 5, "getup": 6, "dance": 4,
}
#: Object manipulation -> AVA id. At most one besides "carry".
OBJECT_IDS: dict[str, int] = {
    "carry": 17, "drink": 27, "read": 48, "phone": 15, "lift": 36, "putdown": 47, "throw": 58,
}
#: Person interaction -> AVA id.
INTERACTION_IDS: dict[str, int] = {
    "fight": 64, "give": 65, "take": 78, "handshake": 68, "wave": 69, "hug": 70, "listen": 74,
    "talk": 79, "watch": 80,
}
ACTION_IDS: dict[str, int] = {**POSE_IDS, **OBJECT_IDS, **INTERACTION_IDS}
#: AVA ids (1-based) RAVAR-Synth renders; every other class is always negative.
RENDERED_IDS: tuple[int, ...] = tuple(sorted(ACTION_IDS.values()))
#: RefAVA training prevalence of the rendered classes (positives / instances).
REFAVA_PREVALENCE: dict[int, float] = {
    i: REFAVA_TRAIN_COUNTS[i - 1] / REFAVA_TRAIN_SIZE for i in RENDERED_IDS
}
_POSE_MASS = sum(REFAVA_PREVALENCE[i] for i in POSE_IDS.values())
#: What the sampler aims at: RefAVA's prevalence, except that the pose classes (exactly one per
#: person here) are rescaled to sum to 1; RefAVA's remaining 4.4 % of people have a pose we do
#: not render (martial art, ride, swim, ...).
TARGET_PREVALENCE: dict[int, float] = {
    i: (p / _POSE_MASS if i in POSE_IDS.values() else p) for i, p in REFAVA_PREVALENCE.items()
}

#: Poses a conversation partner may have (people in a conversation do not walk off or jump).
GROUP_POSES = ("stand", "sit", "bend", "crouch", "lie")
#: Which object actions each pose allows (the rest would be unrenderable or absurd).
OBJECT_POSES: dict[str, tuple[str, ...]] = {
    "drink": ("stand", "sit", "walk"), "read": ("stand", "sit", "lie", "crouch"),
    "phone": ("stand", "sit", "walk", "lie"), "lift": ("bend", "crouch"),
    "putdown": ("bend", "crouch"), "throw": ("stand", "walk"),
}
CARRY_POSES = ("stand", "sit", "walk", "run", "bend", "crouch")
#: What is in the hand for each object action ("carry" draws from CARRY_OBJECTS).
HELD_OBJECT: dict[str, str] = {"drink": "cup", "read": "book", "phone": "phone", "lift": "box",
                               "putdown": "box", "throw": "ball", "give": "box"}
CARRY_OBJECTS: dict[str, float] = {"box": 0.35, "cup": 0.25, "book": 0.2, "phone": 0.2}
SPECIAL_PAIRS = ("fight", "handshake", "hug", "give")


@dataclass(frozen=True)
class Rates:
    """Sampler constants, tuned by Monte Carlo so marginals match TARGET_PREVALENCE."""

    in_group: float = 0.736  # P(a person joins a conversation)
    triple: float = 0.40  # P(an odd one out joins a three-way conversation rather than none)
    watch_in: float = 0.635  # P(watch | in a conversation)
    watch_out: float = 0.307  # P(watch | not in a conversation)
    wave: float = 0.0029  # P(hand wave | not in a conversation)
    special: tuple[float, float, float, float] = (0.020, 0.0051, 0.0033, 0.0093)  # per pair
    objects: tuple[tuple[str, float], ...] = (
        ("drink", 0.0120), ("read", 0.0107), ("phone", 0.0045), ("lift", 0.036), ("putdown", 0.046),
        ("throw", 0.0015))
    carry: float = 0.207  # P(carry | no other object action, pose allows it)
    #: Multipliers on RefAVA's pose counts that undo the bias of re-drawing repeated label sets
    #: and of the poses forced by pair interactions.
    pose_adjust: tuple[tuple[str, float], ...] = (
        ("bend", 0.867), ("crouch", 0.767), ("dance", 0.738), ("fall", 0.639), ("getup", 0.738),
        ("jump", 0.772), ("lie", 1.010), ("run", 0.811), ("sit", 1.032), ("stand", 1.053),
        ("walk", 0.855))
    #: Pose of the second fighter (ducking or kneeling under the blows).
    victim_poses: tuple[tuple[str, float], ...] = (("bend", 0.6), ("crouch", 0.4))


DEFAULT_RATES = Rates()


@dataclass
class ActionSpec:
    """What one person does over the clip, enough to render it and to label it."""

    pose: str
    obj: str | None = None  # drink / read / phone / lift / putdown / throw, or None
    carry: bool = False
    held: str | None = None  # cup / phone / book / box / ball
    social: str | None = None  # talk / listen (in a conversation)
    special: str | None = None  # fight / handshake / hug / give / take / wave
    partner: int | None = None  # the person this one faces (conversation or pair partner)
    watch: int | None = None  # the person this one watches (gaze target)
    group: int | None = None  # conversation index
    labels: tuple[int, ...] = field(default=())

    def compute_labels(self) -> tuple[int, ...]:
        ids = {POSE_IDS[self.pose]}
        if self.obj:
            ids.add(OBJECT_IDS[self.obj])
        if self.carry:
            ids.add(OBJECT_IDS["carry"])
        for name in (self.social, self.special):
            if name:
                ids.add(INTERACTION_IDS[name])
        if self.watch is not None:
            ids.add(INTERACTION_IDS["watch"])
        return tuple(sorted(ids))


def _pose_weights(rates: Rates) -> dict[str, float]:
    adjust = dict(rates.pose_adjust)
    return {p: float(REFAVA_TRAIN_COUNTS[i - 1]) * adjust.get(p, 1.0) for p, i in POSE_IDS.items()}


def pose_distributions(rates: Rates) -> tuple[dict[str, float], dict[str, float]]:
    """Pose probabilities inside and outside conversations whose mixture (weights
    ``rates.in_group``) is RefAVA's pose distribution, renormalised over the rendered poses."""
    w = _pose_weights(rates)
    total = sum(w.values())
    target = {p: v / total for p, v in w.items()}
    in_mass = sum(target[p] for p in GROUP_POSES)
    p_in = {p: (target[p] / in_mass if p in GROUP_POSES else 0.0) for p in target}
    g = rates.in_group
    p_out = {p: max(0.0, (target[p] - g * p_in[p]) / (1 - g)) for p in target}
    s = sum(p_out.values())
    return p_in, {p: v / s for p, v in p_out.items()}


def _choice(rng: np.random.Generator, dist: dict[str, float]) -> str:
    names = list(dist)
    p = np.array([dist[n] for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _object_part(rng: np.random.Generator, spec: ActionSpec, rates: Rates) -> None:
    """Object action and carry flag for a person whose pose is set (specials hold nothing)."""
    spec.obj, spec.carry, spec.held = None, False, None
    if spec.special in ("fight", "handshake", "hug", "give", "take"):
        if spec.special == "give":
            spec.held = HELD_OBJECT["give"]
        return
    u = rng.random()
    acc = 0.0
    for name, p in rates.objects:
        acc += p
        if u < acc:
            if spec.pose in OBJECT_POSES[name]:
                spec.obj, spec.held = name, HELD_OBJECT[name]
                spec.carry = name in ("drink", "read", "phone")  # the object is in the hand
            break
    if spec.obj is None and spec.special != "wave" and spec.pose in CARRY_POSES \
            and rng.random() < rates.carry:
        spec.carry = True
        spec.held = _choice(rng, CARRY_OBJECTS)


def sample_actions(rng: np.random.Generator, n: int, rates: Rates = DEFAULT_RATES,
                   max_tries: int = 50) -> list[ActionSpec]:
    """Actions of the ``n`` people of one clip; all label sets pairwise different."""
    p_in, p_out = pose_distributions(rates)
    for _ in range(max_tries):
        specs = _sample_once(rng, n, rates, p_in, p_out)
        if _make_distinct(rng, specs, rates, p_in, p_out):
            return specs
    raise RuntimeError(f"could not sample {n} distinct label sets")  # pragma: no cover


def _sample_once(rng: np.random.Generator, n: int, rates: Rates, p_in: dict[str, float],
                 p_out: dict[str, float]) -> list[ActionSpec]:
    members = [i for i in range(n) if rng.random() < rates.in_group]
    if len(members) == 1:
        others = [i for i in range(n) if i not in members]
        if rng.random() < 0.5 and others:
            members.append(others[int(rng.integers(len(others)))])
        else:
            members = []
    members = [int(i) for i in rng.permutation(members)]
    if len(members) % 2 and rng.random() >= rates.triple:
        members = members[:-1]  # an odd one out stays alone unless a three-way talk is drawn
    groups: list[list[int]] = []
    while len(members) >= 2:
        k = 3 if len(members) % 2 else 2
        groups.append(members[:k])
        members = members[k:]
    in_group = {i: g for g, grp in enumerate(groups) for i in grp}
    specs = [ActionSpec(pose=_choice(rng, p_in if i in in_group else p_out)) for i in range(n)]
    for g, grp in enumerate(groups):
        talker = grp[0]
        listeners = grp[1:]
        for i in grp:
            specs[i].group = g
        specs[talker].social = "talk"
        specs[talker].partner = listeners[int(rng.integers(len(listeners)))]
        for i in listeners:
            specs[i].social, specs[i].partner = "listen", talker
        special = None
        if len(grp) == 2:
            u, acc = rng.random(), 0.0
            for name, p in zip(SPECIAL_PAIRS, rates.special):
                acc += p
                if u < acc:
                    special = name
                    break
        if special:
            a, b = grp
            for i in grp:
                specs[i].pose = "stand"
                specs[i].watch = specs[i].partner
            if special == "fight":
                for i in grp:
                    specs[i].social, specs[i].special = None, "fight"
                specs[b].pose = _choice(rng, dict(rates.victim_poses))
            elif special == "give":
                specs[a].special, specs[b].special = "give", "take"
            else:
                specs[a].special = specs[b].special = special
        else:
            for i in grp:
                if rng.random() < rates.watch_in:
                    specs[i].watch = specs[i].partner
    for i in range(n):
        if i in in_group:
            continue
        others = [j for j in range(n) if j != i]
        if rng.random() < rates.watch_out:
            specs[i].watch = others[int(rng.integers(len(others)))]
        if rng.random() < rates.wave:
            specs[i].special = "wave"
            if specs[i].watch is None:
                specs[i].watch = others[int(rng.integers(len(others)))]
            if specs[i].pose not in ("stand", "walk", "sit"):
                specs[i].pose = "stand"
    for spec in specs:
        _object_part(rng, spec, rates)
        spec.labels = spec.compute_labels()
    return specs


def _make_distinct(rng: np.random.Generator, specs: list[ActionSpec], rates: Rates,
                   p_in: dict[str, float], p_out: dict[str, float], tries: int = 30) -> bool:
    """Re-draw the individual part (pose, object) of people whose labels repeat a previous
    person's; the interaction structure is kept. False if that does not succeed."""
    for i, spec in enumerate(specs):
        for _ in range(tries):
            if spec.labels not in {s.labels for s in specs[:i]}:
                break
            if spec.special in SPECIAL_PAIRS or spec.special == "take":
                return False  # their pose is fixed; let the caller re-draw the clip
            spec.pose = _choice(rng, p_in if spec.group is not None else p_out)
            if spec.special == "wave" and spec.pose not in ("stand", "walk", "sit"):
                spec.pose = "stand"
            _object_part(rng, spec, rates)
            spec.labels = spec.compute_labels()
        else:
            return False
    return True


def label_prevalence(label_sets: list[tuple[int, ...]]) -> dict[int, float]:
    """Positive rate of each rendered class over a list of label sets."""
    n = max(1, len(label_sets))
    return {i: sum(i in s for s in label_sets) / n for i in RENDERED_IDS}
