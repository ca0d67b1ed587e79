"""Referring expressions: appearance and position only, each naming exactly one person.

The attribute/relation model is explicit: a :class:`Query` is a set of attribute filters
(clothing colours, hat, glasses, bag, build, "next to" a chair/box/table) plus an optional
selector over the people that pass them (left/right-most, second from the left/right, middle,
taller/shorter of exactly two). :func:`resolve` evaluates a query on a clip's people, with
margins so that "on the left" is only used where a viewer could tell. Generation enumerates the
queries that resolve to the target alone, samples a cheap one, and realises it with one of several
templates; :func:`parse` reads a sentence back into a query, so tests can check that the *text*
(not just the generator's intent) singles out one person. No sentence ever uses an action word
(:data:`ACTION_WORDS`).
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from .people import BOTTOM_COLOURS, TOP_COLOURS

POS_MARGIN = 5.0  # render px between box centres before "left of" is considered visible
HEIGHT_MARGIN = 0.10  # relative stature difference for "taller"/"shorter"
NEAR_GAP = 6.0  # render px between a person's box and an object's box for "next to"
NEAR_KINDS = ("chair", "box", "table")
TOP_NOUNS = ("top", "shirt", "sweater", "jacket")
BOTTOM_NOUNS = ("trousers", "pants")
SELECTORS = ("left", "right", "second_left", "second_right", "middle", "taller", "shorter")

# ------------------------------------------------------------------------------ action words
#: Verbs of the AVA action names (outside their parentheses), i.e. every action class's head
#: verb(s), plus verbs we might be tempted to use for what the figures do.
_AVA_VERBS = (
    "bend bow crawl crouch kneel dance fall get jump leap lie sleep martial run jog sit stand swim "
    "walk answer brush carry hold catch chop climb clink close cook cut dig dress drink drive eat "
    "enter exit extract fish hit kick lift pick listen open paint play point press pull push put "
    "read ride row sail shoot shovel smoke stir take text look throw touch turn watch work write "
    "fight give serve grab clap shake handshake wave hug kiss sing talk"
).split()
_OUR_VERBS = (
    "gesture nod sip punch squat lean step move hop chat speak say stare gaze greet embrace reach "
    "pass toss rise stumble trip tumble collapse rest sprint stroll wander face"
).split()
_IRREGULAR = {
    "run": "ran", "sit": "sat", "stand": "stood", "fall": "fell fallen", "lie": "lay lain lying",
    "get": "got gotten", "swim": "swam swum", "ride": "rode ridden", "drive": "drove driven",
    "eat": "ate eaten", "drink": "drank drunk", "catch": "caught", "dig": "dug", "hold": "held",
    "give": "gave given", "take": "took taken", "throw": "threw thrown", "shake": "shook shaken",
    "sing": "sang sung", "shoot": "shot", "fight": "fought", "write": "wrote written",
    "sleep": "slept", "kneel": "knelt", "leap": "leapt", "bend": "bent", "speak": "spoke spoken",
    "say": "said", "rise": "rose risen", "bow": "bowed", "wear": "wore",
}
_DOUBLE = set("run sit get swim dig hit cut put grab hug clap chop stir jog nod sip chat hop step trip shop".split())


def _forms(verb: str) -> set[str]:
    forms = {verb}
    stem = verb[:-1] if verb.endswith("e") and not verb.endswith("ee") else verb
    if verb in _DOUBLE:
        forms |= {verb + verb[-1] + "ing", verb + verb[-1] + "ed"}
    forms |= {stem + "ing", stem + "ed" if stem != verb else verb + "ed", verb + "d"}
    forms.add(verb + ("es" if verb.endswith(("s", "sh", "ch", "x")) else "s"))
    if verb.endswith("y") and verb[-2] not in "aeiou":
        forms |= {verb[:-1] + "ies", verb[:-1] + "ied"}
    forms |= set(_IRREGULAR.get(verb, "").split())
    return forms


#: Every inflected form of every action verb; no sentence may contain one as a word.
ACTION_WORDS: frozenset[str] = frozenset(w for v in _AVA_VERBS + _OUR_VERBS for w in _forms(v))
_WORD = re.compile(r"[a-z]+")


def action_words_in(sentence: str) -> list[str]:
    """The action words a sentence contains (should be none)."""
    return [w for w in _WORD.findall(sentence.lower()) if w in ACTION_WORDS]


def ava_name_words(name: str) -> list[str]:
    """Words of an AVA action name outside its parentheses (for checking ACTION_WORDS)."""
    return _WORD.findall(re.sub(r"\([^)]*\)", " ", name.lower()))


# -------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class Facts:
    """What a viewer can say about one person on the key frame."""

    top: str
    bottom: str
    hat: bool
    hat_word: str  # "hat" or "cap" (what is drawn); both mean hat=True
    glasses: bool
    bag: str | None
    build: str
    stature: float
    x: float  # box centre, render px
    near: frozenset[str]


@dataclass(frozen=True)
class Query:
    filters: tuple[tuple[str, object], ...]  # sorted (attribute, value) pairs
    selector: str | None = None

    @classmethod
    def make(cls, filters: dict[str, object] | list[tuple[str, object]], selector: str | None = None) -> "Query":
        items = filters.items() if isinstance(filters, dict) else filters
        return cls(tuple(sorted(items, key=lambda kv: (kv[0], str(kv[1])))), selector)

    def as_dict(self) -> dict:
        return {"filters": {k: v for k, v in self.filters}, "selector": self.selector}


def holds(f: Facts, attr: str, value: object) -> bool:
    if attr in ("top", "bottom", "hat", "glasses", "bag"):
        return getattr(f, attr) == value
    if attr == "build":
        return f.build != "child" if value == "adult" else f.build == value
    if attr == "near":
        return value in f.near
    raise ValueError(f"unknown attribute {attr!r}")


def resolve(q: Query, people: list[Facts]) -> list[int]:
    """Indices of the people a query can denote; exactly one means it is unambiguous. A
    selector whose preconditions fail (e.g. "of the two" with three matches) denotes nobody."""
    s = [i for i, f in enumerate(people) if all(holds(f, a, v) for a, v in q.filters)]
    sel = q.selector
    if sel is None:
        return s
    if sel in ("taller", "shorter"):
        if len(s) != 2:
            return []
        a, b = (people[i].stature for i in s)
        if abs(a - b) < HEIGHT_MARGIN * max(a, b):
            return s
        tall = s[0] if a > b else s[1]
        return [tall] if sel == "taller" else [i for i in s if i != tall]
    if len(s) < 2:
        return []
    xs = sorted(people[i].x for i in s)
    if sel in ("left", "right"):
        ref = xs[0] if sel == "left" else xs[-1]
    elif sel in ("second_left", "second_right"):
        if len(s) < 3:
            return []
        ref = xs[1] if sel == "second_left" else xs[-2]
    elif sel == "middle":
        if len(s) % 2 == 0 or len(s) < 3:
            return []
        ref = xs[len(s) // 2]
    else:
        raise ValueError(f"unknown selector {sel!r}")
    return [i for i in s if abs(people[i].x - ref) < POS_MARGIN]


def _box_gap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return max(0.0, max(a[0], b[0]) - min(a[2], b[2]))


def near_relations(person_boxes: list[tuple[float, ...]], objects: list[tuple[str, tuple[float, ...]]],
                   owners: list[int | None]) -> list[set[str]]:
    """For each person, the object kinds it is unambiguously "next to": the person must be the
    closest one to some object of that kind (by horizontal gap, standing on about the same floor
    line), clearly closer than the runner-up. ``owners[k]`` is the person sitting on object k."""
    near: list[set[str]] = [set() for _ in person_boxes]
    for (kind, ob), owner in zip(objects, owners):
        if kind not in NEAR_KINDS:
            continue
        gaps = []
        for i, pb in enumerate(person_boxes):
            if i == owner or abs(pb[3] - ob[3]) > 8.0:
                continue
            gaps.append((_box_gap(pb, ob), i))
        gaps.sort()
        if gaps and gaps[0][0] <= NEAR_GAP and (len(gaps) == 1 or gaps[1][0] - gaps[0][0] > 3.0):
            near[gaps[0][1]].add(kind)
    return near


# ----------------------------------------------------------------------------- generation
def _atoms(people: list[Facts], t: int) -> list[tuple[str, object]]:
    f = people[t]
    atoms: list[tuple[str, object]] = [("top", f.top), ("bottom", f.bottom)]
    others = [p for i, p in enumerate(people) if i != t]
    atoms.append(("hat", True) if f.hat else ("hat", False))
    atoms.append(("glasses", True) if f.glasses else ("glasses", False))
    if f.bag:
        atoms.append(("bag", f.bag))
    if f.build in ("child", "tall"):
        atoms.append(("build", f.build))
    elif any(p.build == "child" for p in others):
        atoms.append(("build", "adult"))
    atoms += [("near", k) for k in sorted(f.near)]
    # a negative only helps when somebody else has the thing
    return [(a, v) for a, v in atoms
            if not (v is False and not any(getattr(p, a) for p in others))]


_ATOM_COST = {"top": 1.0, "bottom": 1.1, "hat": 1.0, "glasses": 1.1, "bag": 1.0, "build": 0.9, "near": 1.3}
_SEL_COST = {None: 0.0, "left": 0.0, "right": 0.0, "second_left": 1.2, "second_right": 1.2,
             "middle": 1.0, "taller": 0.9, "shorter": 0.9}


def _cost(q: Query) -> float:
    c = sum(_ATOM_COST[a] + (0.6 if v is False else 0.0) for a, v in q.filters)
    c += _SEL_COST[q.selector]
    attrs = {a for a, _ in q.filters}
    if not attrs - {"near"}:
        c += 1.0  # RefAVA sentences nearly always name some appearance
    if {"top", "bottom"} <= attrs:
        c -= 0.4  # "in a red top and blue trousers" reads as one phrase
    return c


def valid_queries(people: list[Facts], t: int, max_filters: int = 3) -> list[Query]:
    """All queries of up to ``max_filters`` filters that denote person ``t`` alone."""
    atoms = _atoms(people, t)
    out: list[Query] = []
    for k in range(0, max_filters + 1):
        for combo in itertools.combinations(atoms, k):
            if len({a for a, _ in combo}) < k:
                continue
            for sel in (None,) + SELECTORS:
                if sel in ("taller", "shorter") and any(a == "near" for a, _ in combo):
                    continue
                q = Query.make(list(combo), sel)
                if resolve(q, people) == [t]:
                    out.append(q)
        if len(out) >= 4 and k >= 2:
            break
    return out


def choose_queries(people: list[Facts], t: int, rng: np.random.Generator, n: int = 3,
                   temperature: float = 1.6) -> list[Query]:
    """Up to ``n`` different valid queries for person ``t``, cheap ones preferred."""
    qs = valid_queries(people, t)
    if not qs:
        return []
    costs = np.array([_cost(q) for q in qs])
    w = np.exp(-temperature * (costs - costs.min()))
    k = min(n, len(qs))
    picks = rng.choice(len(qs), size=k, replace=False, p=w / w.sum())
    chosen = [qs[int(i)] for i in picks]
    # sometimes over-specify, as annotators do: one more true attribute, if still unambiguous
    if rng.random() < 0.25:
        first = chosen[0]
        used = {a for a, _ in first.filters}
        extra = [(a, v) for a, v in _atoms(people, t) if a not in used and a != "near" and v is not False]
        if extra:
            a, v = extra[int(rng.integers(len(extra)))]
            q = Query.make(list(first.filters) + [(a, v)], first.selector)
            if resolve(q, people) == [t]:
                chosen[0] = q
    return chosen


# ----------------------------------------------------------------------------- surface
def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _phrases(q: Query, f: Facts, rng: np.random.Generator, plural: bool = False) -> list[str]:
    d = dict(q.filters)
    out: list[str] = []
    tn = str(rng.choice(TOP_NOUNS))
    bn = str(rng.choice(BOTTOM_NOUNS))
    wear = "wearing" if rng.random() < 0.35 else "in"
    if "top" in d and "bottom" in d:
        top = f"{d['top']} {tn}s" if plural else f"{_article(str(d['top']))} {d['top']} {tn}"
        out.append(f"{wear} {top} and {d['bottom']} {bn}")
    elif "top" in d:
        out.append(f"{wear} " + (f"{d['top']} {tn}s" if plural else f"{_article(str(d['top']))} {d['top']} {tn}"))
    elif "bottom" in d:
        out.append(f"{wear} {d['bottom']} {bn}")
    withs: list[str] = []
    if d.get("hat") is True:
        word = f.hat_word
        if rng.random() < 0.5 and not (out and out[0].startswith("wearing")):
            out.append(f"wearing {word}s" if plural else f"wearing a {word}")
        else:
            withs.append(f"{word}s" if plural else f"a {word}")
    elif d.get("hat") is False:
        out.append("without hats" if plural else str(rng.choice(["without a hat", "with no hat"])))
    if d.get("glasses") is True:
        withs.append("glasses")
    elif d.get("glasses") is False:
        out.append("without glasses")
    if "bag" in d:
        if d["bag"] == "backpack":
            withs.append("backpacks" if plural else "a backpack")
        else:
            withs.append("shoulder bags" if plural else str(rng.choice(["a shoulder bag", "a bag"])))
    if withs:
        out.append("with " + (" and ".join(withs) if len(withs) < 3 else ", ".join(withs[:-1]) + " and " + withs[-1]))
    if "near" in d:
        out.append(f"{rng.choice(['next to', 'beside', 'near'])} the {d['near']}")
    return out


def _noun(q: Query, rng: np.random.Generator, plural: bool = False) -> str:
    build = dict(q.filters).get("build")
    if build == "child":
        return "children" if plural else str(rng.choice(["child", "kid", "young child"]))
    if build == "tall":
        return "tall people" if plural else "tall person"
    if build == "adult":
        return "adults" if plural else "adult"
    return "people" if plural else str(rng.choice(["person", "person", "individual", "figure"]))


def realise(q: Query, f: Facts, rng: np.random.Generator, group: int = 3) -> str:
    """One English sentence for a query (several templates; the target's facts pick hat/cap).
    ``group`` is how many people pass the filters: "leftmost" / "on the far left" are only used
    for three or more, two are told apart by plain "on the left"."""
    sel = q.selector
    if sel in ("taller", "shorter"):
        tail = " ".join(_phrases(q, f, rng, plural=True))
        text = f"the {sel} of the two {_noun(q, rng, plural=True)} {tail}"
    else:
        noun = _noun(q, rng)
        phrases = _phrases(q, f, rng)
        body = " ".join(phrases)
        side = {"left": "left", "right": "right", "second_left": "left", "second_right": "right"}.get(sel or "")
        if sel in ("second_left", "second_right"):
            text = f"the second {noun} from the {side} {body}"
        elif sel in ("left", "right"):
            style = int(rng.integers(3)) if group >= 3 else 1
            if style == 0:
                text = f"the {side}most {noun} {body}"
            else:
                far = group >= 3 and rng.random() < 0.4
                where = f"on the far {side}" if far else f"on the {side}"
                text = f"the {noun} {body} {where}"  # the position reads as applying to the phrase
        elif sel == "middle":
            text = f"the {noun} {body} in the middle"
        else:
            text = f"the {noun} {body}"
    text = re.sub(r"\s+", " ", text).strip()
    return text[0].upper() + text[1:] + "."


# ------------------------------------------------------------------------------- parsing
_COLOURS = "|".join(sorted(set(TOP_COLOURS) | set(BOTTOM_COLOURS)))
_TOPS = "|".join(n + "s?" for n in TOP_NOUNS)
_BOTTOMS = "|".join(BOTTOM_NOUNS)


def parse(sentence: str) -> Query:
    """Read a generated sentence back into a :class:`Query` (vocabulary-driven, template-free)."""
    s = " " + re.sub(r"[^a-z ]", " ", sentence.lower()) + " "
    s = re.sub(r"\s+", " ", s)
    filters: dict[str, object] = {}
    sel: str | None = None
    if m := re.search(r"\b(taller|shorter) of the two\b", s):
        sel = m.group(1)
    elif m := re.search(r"\bsecond \w+(?: \w+)? from the (left|right)\b", s):
        sel = "second_" + m.group(1)
    elif m := re.search(r"\b(?:on the far |on the )(left|right)\b|\b(left|right)most\b", s):
        sel = m.group(1) or m.group(2)
    elif re.search(r"\bin the middle\b", s):
        sel = "middle"
    for m in re.finditer(rf"\b({_COLOURS}) ({_TOPS})\b", s):
        filters["top"] = m.group(1)
    for m in re.finditer(rf"\b({_COLOURS}) ({_BOTTOMS})\b", s):
        filters["bottom"] = m.group(1)
    if re.search(r"\b(?:without (?:a )?|with no )(?:hat|cap)s?\b", s):
        filters["hat"] = False
    elif re.search(r"\b(?:hat|cap)s?\b", s):
        filters["hat"] = True
    if re.search(r"\b(?:without|with no) glasses\b", s):
        filters["glasses"] = False
    elif re.search(r"\bglasses\b", s):
        filters["glasses"] = True
    if re.search(r"\bbackpacks?\b", s):
        filters["bag"] = "backpack"
    elif re.search(r"\bbags?\b", s):
        filters["bag"] = "bag"
    if re.search(r"\b(?:child|children|kid)\b", s):
        filters["build"] = "child"
    elif re.search(r"\btall\b", s):
        filters["build"] = "tall"
    elif re.search(r"\badults?\b", s):
        filters["build"] = "adult"
    if m := re.search(r"\b(?:next to|beside|near) the (chair|box|table)\b", s):
        filters["near"] = m.group(1)
    return Query.make(filters, sel)


def describe(people: list[Facts], t: int, rng: np.random.Generator, n: int = 3) -> tuple[list[str], list[Query]]:
    """Up to ``n`` distinct sentences for person ``t`` (first = the official one), each checked by
    parsing it back and resolving it; empty lists if the person cannot be singled out."""
    sentences: list[str] = []
    queries: list[Query] = []
    for q in choose_queries(people, t, rng, n=n):
        group = len(resolve(Query(q.filters), people))
        for _ in range(4):
            text = realise(q, people[t], rng, group)
            if text not in sentences and resolve(parse(text), people) == [t] and not action_words_in(text):
                sentences.append(text)
                queries.append(q)
                break
    return sentences, queries
