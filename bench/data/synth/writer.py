"""Write RAVAR-Synth in the official RefAVA layout (plus our candidates file and a sidecar).

Per split, in the RefAVA root::

    {split}_set_keyframe_crr_final.pkl     key -> [[x1, y1, x2, y2]]   (normalised, one row)
    {split}_set_label_crr_final.pkl        key -> [AVA ids]
    {split}_set_description_crr_final.pkl  key -> [sentence, paraphrase, ...]  (v[0] is used)
    {split}_set_candidates.pkl             video___ts -> {"boxes", "labels", "scores"}
    {split}_set_synth.json                 per clip: every person's attributes, labels, box,
                                           occlusion, and the queries behind each sentence
    frames/<video>/image_%06d.jpg          only the files an instance reads (clip frames + key)

Pickles hold only dicts, lists, strings, ints and floats (protocol 4), so the harness's
allow-list unpickler reads them, and bytes are identical for identical inputs.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..frames import KEY_INDEX, WINDOW, clip_frame_numbers, frame_file
from ..refava import candidates_name, pickle_name
from .expressions import Facts, Query
from .render import KeyFrameGeometry, draw_background, render_frame
from .scenes import Scene

JPEG_QUALITY = 92


@dataclass
class ClipPlan:
    """One clip, fully decided: scene, key-frame geometry, facts, referred people, candidates."""

    scene: Scene
    geometry: KeyFrameGeometry
    facts: list[Facts]
    referred: list[tuple[int, list[str], list[Query]]]  # (actor index, sentences, queries)
    candidates: dict[str, list]

    @property
    def clip_key(self) -> str:
        return f"{self.scene.video_id}___{self.scene.timestamp}"


def frame_jobs(timestamp: int, num_frames: int) -> list[tuple[int, float]]:
    """(file number, clip time) of every file an instance of this timestamp reads."""
    numbers, key = clip_frame_numbers(timestamp, num_frames)
    start = key - KEY_INDEX
    return [(n, (n - start) / (WINDOW - 1)) for n in sorted(set(numbers) | {key})]


def render_clip_files(scene: Scene, num_frames: int, root: str | Path, quality: int = JPEG_QUALITY) -> int:
    """Render and save the JPEG files of one clip; returns how many were written."""
    folder = Path(root) / Path(frame_file(scene.video_id, 1)).parent
    folder.mkdir(parents=True, exist_ok=True)
    bg = draw_background(scene)
    jobs = frame_jobs(scene.timestamp, num_frames)
    start = jobs[0][0]
    for number, t in jobs:
        frame = render_frame(scene, t, number - start, bg)
        Image.fromarray(frame).save(Path(root) / frame_file(scene.video_id, number), format="JPEG",
                                    quality=quality, subsampling=0, optimize=False)
    return len(jobs)


def _box(plan: ClipPlan, i: int) -> list[float]:
    s = plan.scene
    x1, y1, x2, y2 = plan.geometry.person_boxes[i]
    box = [min(max(x1 / s.width, 0.0), 1.0), min(max(y1 / s.height, 0.0), 1.0),
           min(max(x2 / s.width, 0.0), 1.0), min(max(y2 / s.height, 0.0), 1.0)]
    return [round(v, 6) for v in box]


def instance_key(plan: ClipPlan, i: int) -> str:
    return f"{plan.clip_key}___{plan.scene.actors[i].pid}"


def write_annotations(root: str | Path, split: str, plans: list[ClipPlan]) -> dict[str, int]:
    """Write the three RefAVA pickles, the candidates pickle and the sidecar of a split."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    keyframe: dict[str, list] = {}
    label: dict[str, list] = {}
    description: dict[str, list] = {}
    candidates: dict[str, dict] = {}
    sidecar: list[dict] = []
    for plan in plans:
        candidates[plan.clip_key] = plan.candidates
        referred = {i: (texts, qs) for i, texts, qs in plan.referred}
        for i, texts, _ in plan.referred:
            key = instance_key(plan, i)
            label[key] = list(plan.scene.actors[i].spec.labels)
            keyframe[key] = [_box(plan, i)]
            description[key] = list(texts)
        sidecar.append(_clip_record(plan, referred))
    for kind, data in (("keyframe", keyframe), ("label", label), ("description", description)):
        with open(root / pickle_name(split, kind), "wb") as fh:
            pickle.dump(data, fh, protocol=4)
    with open(root / candidates_name(split), "wb") as fh:
        pickle.dump(candidates, fh, protocol=4)
    (root / f"{split}_set_synth.json").write_text(json.dumps(sidecar, sort_keys=True, separators=(",", ":")))
    return {"instances": len(label), "clips": len(plans),
            "videos": len({p.scene.video_id for p in plans})}


def _clip_record(plan: ClipPlan, referred: dict[int, tuple[list[str], list[Query]]]) -> dict:
    people = []
    for i, (a, f) in enumerate(zip(plan.scene.actors, plan.facts)):
        spec = a.spec
        rec = {
            "pid": a.pid, "labels": list(spec.labels), "box": _box(plan, i),
            "occlusion": round(float(plan.geometry.occlusion[i]), 4),
            "attributes": {"top": f.top, "bottom": f.bottom, "hat": a.app.hat, "glasses": f.glasses,
                           "bag": f.bag, "build": f.build, "height": round(f.stature, 3),
                           "near": sorted(f.near)},
            "action": {"pose": spec.pose, "object": spec.obj, "carry": spec.carry, "held": spec.held,
                       "social": spec.social, "special": spec.special,
                       "partner": None if spec.partner is None else plan.scene.actors[spec.partner].pid,
                       "watch": None if spec.watch is None else plan.scene.actors[spec.watch].pid},
            "referred": i in referred,
        }
        if i in referred:
            rec["key"] = instance_key(plan, i)
            rec["sentences"] = referred[i][0]
            rec["queries"] = [q.as_dict() for q in referred[i][1]]
        people.append(rec)
    return {"clip": plan.clip_key, "video": plan.scene.video_id, "timestamp": plan.scene.timestamp,
            "difficulty": round(plan.scene.nuisance.difficulty, 4), "people": people,
            "props": [p.kind for p in plan.scene.props if not p.occluder],
            "occluders": [p.kind for p in plan.scene.props if p.occluder]}


def read_sidecar(root: str | Path, split: str) -> list[dict]:
    """The per-clip records written by :func:`write_annotations`."""
    return json.loads((Path(root) / f"{split}_set_synth.json").read_text())


def label_matrix(label_lists: list[list[int]]) -> np.ndarray:
    """Multi-hot (N, 80) from lists of AVA ids."""
    y = np.zeros((len(label_lists), 80), np.uint8)
    for r, ids in enumerate(label_lists):
        y[r, [i - 1 for i in ids]] = 1
    return y
