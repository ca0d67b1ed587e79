"""RAVAR-Synth: rendering, referring expressions, labels, RefAVA layout, determinism, references."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ravar_bench.classes import AVA_ACTIONS
from ravar_bench.data.batches import text_swap_partner
from ravar_bench.data.prepared import PreparedSplit
from ravar_bench.data.refava import validate_folder
from ravar_bench.data.safe_pickle import safe_load
from ravar_bench.data.synth import GENERATOR_VERSION, SynthConfig, generate
from ravar_bench.data.synth import actions as A
from ravar_bench.data.synth import expressions as E
from ravar_bench.data.synth.generate import plan_split
from ravar_bench.data.synth.preview import clip_strip, example_plan, key_frame_with_sentences

SMALL = (16, 8, 8)  # instances per split for the end-to-end tests (seconds)


def _hash_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "seed0"
    cfg = SynthConfig(size="tiny", seed=0, split_sizes=SMALL)
    generate(config=cfg, out=out, progress=False, workers=1)
    return out


@pytest.fixture(scope="module")
def planned():
    """Planned (not rendered) clips: cheap, enough for statistics of sentences and labels."""
    return plan_split(SynthConfig(size="tiny", seed=3, split_sizes=(300, 1, 1)), "train")


# ----------------------------------------------------------------------------- rendering
def test_render_clip_to_png(tmp_path):
    plan = example_plan(seed=1)
    strip = clip_strip(plan, num_frames=8, scale=1)
    key = key_frame_with_sentences(plan, scale=2)
    strip.save(tmp_path / "strip.png")
    key.save(tmp_path / "key.png")
    arr = np.asarray(Image.open(tmp_path / "strip.png"))
    assert arr.shape == (120, 160 * 9, 3)
    frames = arr.reshape(120, 9, 160, 3).transpose(1, 0, 2, 3).astype(int)
    assert frames.std() > 20  # not a blank canvas
    # people move: consecutive frames differ somewhere beyond noise
    assert all(np.abs(frames[k + 1] - frames[k]).max() > 60 for k in range(8))
    assert Image.open(tmp_path / "key.png").size[0] == 320


# -------------------------------------------------------------------------- expressions
def test_action_words_cover_every_ava_class():
    for name in AVA_ACTIONS:
        assert any(w in E.ACTION_WORDS for w in E.ava_name_words(name)), name
    for word in ("standing", "sitting", "holding", "walking", "talking", "waving", "lying", "ran"):
        assert word in E.ACTION_WORDS
    for word in ("wearing", "left", "person", "hat", "glasses", "chair", "the", "with"):
        assert word not in E.ACTION_WORDS


def test_every_sentence_names_exactly_one_person_without_action_words(planned):
    n_sentences = 0
    selectors = set()
    for plan in planned:
        texts_in_clip = [t for _, texts, _ in plan.referred for t in texts]
        assert len(texts_in_clip) == len(set(texts_in_clip)), texts_in_clip
        for i, texts, queries in plan.referred:
            assert texts
            for text, q in zip(texts, queries):
                n_sentences += 1
                assert E.action_words_in(text) == [], text
                parsed = E.parse(text)
                assert parsed == q, (text, parsed, q)
                assert E.resolve(parsed, plan.facts) == [i], text
                selectors.add(q.selector)
    assert n_sentences > 500
    assert {None, "left", "right", "taller", "shorter", "second_left"} <= selectors


def test_resolve_respects_margins():
    f = lambda x, st=44.0, top="red": E.Facts(top, "blue", False, "hat", False, None, "adult", st, x, frozenset())  # noqa: E731
    people = [f(20.0), f(22.0), f(90.0, top="green")]
    assert E.resolve(E.Query.make({"top": "red"}, "left"), people) == [0, 1]  # too close to tell
    assert E.resolve(E.Query.make({}, "right"), people) == [2]
    tall = [f(20.0, 44.0), f(80.0, 52.0)]
    assert E.resolve(E.Query.make({}, "taller"), tall) == [1]
    assert E.resolve(E.Query.make({}, "taller"), [f(20.0, 44.0), f(80.0, 45.0)]) == [0, 1]
    assert E.resolve(E.Query.make({}, "taller"), people) == []  # "of the two" needs exactly two


# -------------------------------------------------------------------------------- labels
def test_labels_distinct_and_interactions_consistent(planned):
    for plan in planned:
        actors = plan.scene.actors
        labels = [a.spec.labels for a in actors]
        assert len(set(labels)) == len(labels)
        for i, a in enumerate(actors):
            s = a.spec
            assert sum(A.POSE_IDS[p] in s.labels for p in A.POSE_IDS) == 1
            if s.social == "listen":
                assert actors[s.partner].spec.social == "talk"
            if s.special in ("handshake", "hug", "fight"):
                assert actors[s.partner].spec.special == s.special
            if s.special == "give":
                assert actors[s.partner].spec.special == "take"
            if s.watch is not None:
                assert s.watch != i and A.INTERACTION_IDS["watch"] in s.labels


def test_label_prevalence_follows_refava_and_is_seed_stable():
    def prevalence(seed: int) -> dict[int, float]:
        rng = np.random.default_rng(seed)
        sets = [s.labels for n in rng.choice([2, 3, 4, 5, 6], size=3000, p=[.22, .3, .24, .14, .1])
                for s in A.sample_actions(rng, int(n))]
        return A.label_prevalence(sets)

    p0, p1 = prevalence(0), prevalence(1)
    for i, target in A.TARGET_PREVALENCE.items():
        tol = 4 * np.sqrt(target * (1 - target) / 9000) + 0.004
        assert abs(p0[i] - p1[i]) < tol * 1.5, (i, p0[i], p1[i])
        assert abs(p0[i] - target) < tol + 0.01, (i, p0[i], target)


def test_other_seed_other_data_same_statistics(planned):
    other = plan_split(SynthConfig(size="tiny", seed=4, split_sizes=(300, 1, 1)), "train")

    def stats(plans):
        labels = [p.scene.actors[i].spec.labels for p in plans for i, _, _ in p.referred]
        texts = [t[0] for p in plans for _, t, _ in p.referred]
        return A.label_prevalence(labels), texts, np.mean([len(p.scene.actors) for p in plans])

    (p3, t3, n3), (p4, t4, n4) = stats(planned), stats(other)
    assert t3 != t4 and len(t3) == len(t4) == 300
    assert abs(n3 - n4) < 0.5
    for i, target in A.TARGET_PREVALENCE.items():  # 300 instances, ~150 clips: loose bands
        assert abs(p3[i] - p4[i]) < 0.12, (i, p3[i], p4[i])
        assert abs(p3[i] - target) < 0.09 and abs(p4[i] - target) < 0.09, (i, p3[i], p4[i], target)


# ---------------------------------------------------------------------- generated dataset
def test_layout_is_valid_refava(generated):
    raw = generated / "refava"
    assert validate_folder(raw) == []
    for split, n in zip(("train", "val", "test"), SMALL):
        labels = safe_load(raw / f"{split}_set_label_crr_final.pkl")
        boxes = safe_load(raw / f"{split}_set_keyframe_crr_final.pkl")
        texts = safe_load(raw / f"{split}_set_description_crr_final.pkl")
        cands = safe_load(raw / f"{split}_set_candidates.pkl")
        assert len(labels) == n and list(labels) == list(boxes) == list(texts)
        for key, ids in labels.items():
            vid, ts, pid = key.split("___")
            assert vid.startswith("synth0_") and 902 <= int(ts) <= 1798 and pid.isdigit()
            assert set(ids) <= set(A.RENDERED_IDS)
            box = np.array(boxes[key])[0][:4]
            assert 0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1
            clip = cands[f"{vid}___{ts}"]
            assert "person" in clip["labels"]
            # detector-like: no candidate is the exact ground-truth box
            assert not any(np.allclose(b, box, atol=1e-4) for b in clip["boxes"])
        # exactly the files an instance reads: 8 clip frames + the key frame per clip
        clips = {k.rsplit("___", 1)[0] for k in labels}
        vids = {c.split("___")[0] for c in clips}
        n_files = sum(len(list((raw / "frames" / v).glob("*.jpg"))) for v in vids)
        assert n_files == 9 * len(clips)


def test_prepared_splits_and_controls(generated):
    for split, n in zip(("train", "val", "test"), SMALL):
        ps = PreparedSplit.load(generated / split)
        assert len(ps) == n
        assert ps.frames.shape[1:] == (8, 96, 96, 3) and ps.key_frames.shape[1:] == (96, 128, 3)
        assert ps.meta.source.startswith(f"synth:tiny@v{GENERATOR_VERSION}")
        assert ps.meta.object_classes[0] == "person"
        partner = text_swap_partner(ps)
        swapped = partner != np.arange(len(ps))
        assert swapped.mean() > 0.5  # most instances share their clip with another referred person
        assert all(ps.texts[i] != ps.texts[j] for i, j in enumerate(partner) if i != j)


def test_references(generated):
    refs = json.loads((generated / "references.json").read_text())
    assert refs["metric"] == "paper_v1"
    for split in ("val", "test"):
        r = refs[split]
        assert r["oracle"] == {"mIoU": 100.0, "mAP": 100.0, "AUROC": 100.0}
        assert r["prior_only"]["AUROC"] == 50.0  # constant scores rank nothing
        assert r["prior_only"]["mAP"] < r["text_blind"]["mAP"] < 100.0
        assert set(r["text_blind_box_rules_mIoU"]) == set(refs["box_rules_train_mIoU"])
        assert 0.0 <= r["text_blind"]["mIoU"] < 100.0
    manifest = json.loads((generated / "synth.json").read_text())
    assert manifest["version"] == GENERATOR_VERSION and manifest["config"]["split_sizes"] == list(SMALL)


def test_same_seed_same_bytes_other_seed_differs(generated, tmp_path):
    again = tmp_path / "again"
    generate(config=SynthConfig(size="tiny", seed=0, split_sizes=SMALL), out=again, progress=False,
             workers=2)
    assert _hash_tree(generated) == _hash_tree(again)
    other = tmp_path / "other"
    generate(config=SynthConfig(size="tiny", seed=1, split_sizes=SMALL), out=other, progress=False,
             workers=1, prepare=False)
    a = safe_load(generated / "refava" / "train_set_description_crr_final.pkl")
    b = safe_load(other / "refava" / "train_set_description_crr_final.pkl")
    assert len(a) == len(b) and list(a.values()) != list(b.values())


def test_config_validation_and_reuse(generated):
    with pytest.raises(ValueError):
        SynthConfig(size="huge")
    with pytest.raises(ValueError):
        SynthConfig(difficulty=1.5)
    assert SynthConfig(difficulty="hard").difficulty == 0.85
    cfg = SynthConfig(size="tiny", seed=0, split_sizes=SMALL)
    assert cfg.fingerprint() != SynthConfig(size="tiny", seed=1, split_sizes=SMALL).fingerprint()
    before = (generated / "train" / "meta.json").stat().st_mtime_ns
    generate(config=cfg, out=generated, progress=False)  # same fingerprint: reused, not rebuilt
    assert (generated / "train" / "meta.json").stat().st_mtime_ns == before
