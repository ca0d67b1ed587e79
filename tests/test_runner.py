"""Suites -> jobs -> records: identity, a full tiny run, offline re-scoring, overwrite modes,
failures, dry runs and data specs."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import control_baseline, make_random_split, write_baseline_tree, write_random_data
from ravar_bench.adapters.registry import register_adapter
from ravar_bench.baselines import Condition, load_suite, suite_conditions
from ravar_bench.metrics import score_all
from ravar_bench.protocol import Batch, DatasetInfo, ModelOutput, RavarModel
from ravar_bench.data.prepared import cache_root
from ravar_bench.data.specs import DataSpecError, resolve_data
from ravar_bench.jobs import RunError
from ravar_bench.runner import expand, run_suite
from ravar_bench.store import Store, load_results

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@register_adapter("test_broken", domain="control")
class Broken(RavarModel):
    """Fails when built, to test that a failing job is recorded and the suite goes on."""

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__()
        raise RuntimeError("boom: this adapter always fails")

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        raise AssertionError


SUITE = """
[suite]
name = "{name}"
title = "Mini"
seeds = 2
controls = ["none", "text_swap"]
perturbations = ["brightness"]
severities = [2]
bootstrap = 50
efficiency = {efficiency}
[train]
epochs = 1
batch_size = 6
lr = 1e-3
{entries}
"""


def entries(*names: str) -> str:
    return "".join(f'\n[[entries]]\nbaseline = "{n}"\n' for n in names)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("runner")
    base = write_baseline_tree(root, {
        "prior": control_baseline("prior", "prior"),
        "text": control_baseline("text", "text_only", "dim = 16\nhidden = 16"),
        "broken": control_baseline("broken", "test_broken"),
    }, {"mini": SUITE.format(name="mini", efficiency="true", entries=entries("prior", "text"))})
    (base / "suites" / "withbroken.toml").write_text(SUITE.format(name="withbroken", efficiency="false",
                                                                  entries=entries("broken", "prior")))
    data = write_random_data(root / "data")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAVAR_BASELINES", str(base))
    mp.setenv("RAVAR_CACHE", str(root / "cache"))
    yield {"root": root, "base": base, "data": resolve_data(str(data)), "data_dir": data}
    mp.undo()


@pytest.fixture(scope="module")
def ran(env):
    suite = load_suite("mini")
    out = env["root"] / "out"
    summary = run_suite(suite, env["data"], out, progress=False)
    return suite, out, summary


# -------------------------------------------------------------------------------- identity
def test_jobs_are_entries_times_seeds_with_stable_ids(env):
    suite = load_suite("mini")
    jobs = expand(suite, env["data"])
    assert len(jobs) == 4 and [j.seed for j in jobs] == [0, 1, 0, 1]
    assert [j.job_id for j in jobs] == [j.job_id for j in expand(suite, env["data"])]
    assert len({j.job_id for j in jobs}) == 4
    assert [j.job_id for j in expand(suite, env["data"], seeds=3)][:2] == [jobs[0].job_id, jobs[1].job_id]
    text = jobs[2]
    # the adapter's defaults are part of the resolved parameters (a changed default is a new job)
    assert text.params == {"dim": 16, "hidden": 16, "text_encoder": "tiny"}
    assert text.train["epochs"] == 1 and text.train["seed"] == 0
    # what changes the numbers changes the id ...
    assert replace(text, params={"dim": 16, "hidden": 8}).job_id != text.job_id
    assert replace(text, train={**text.train, "lr": 0.5}).job_id != text.job_id
    assert replace(text, conditions=("none",)).job_id != text.job_id
    assert replace(text, data=replace(env["data"], fingerprint="0" * 16)).job_id != text.job_id
    # ... and what does not, does not
    assert replace(text, label="another label", suite="other").job_id == text.job_id
    assert replace(text, train={**text.train, "device": "cuda"}).job_id == text.job_id


def test_command_line_training_overrides_reach_every_job(env):
    jobs = expand(load_suite("mini"), env["data"], train_overrides={"epochs": 3, "seed": 10})
    assert {j.train["epochs"] for j in jobs} == {3} and [j.seed for j in jobs] == [10, 11, 10, 11]
    with pytest.raises(ValueError, match="unknown training option 'epoch'"):
        expand(load_suite("mini"), env["data"], train_overrides={"epoch": 3})


def test_condition_names_round_trip():
    suite = load_suite("mini")
    names = [c.name for c in suite_conditions(suite)]
    assert names == ["none", "text_swap", "brightness@2", "text_swap+brightness@2"]
    for name in names:
        assert Condition.parse(name).name == name
    controls, perturb = Condition.parse("text_swap+brightness@2").build()
    assert controls.text_swap and perturb.name == "brightness" and perturb.severity == 2


# ------------------------------------------------------------------------------------ a run
def test_a_suite_run_stores_every_job_split_and_condition(env, ran):
    suite, out, summary = ran
    assert summary.count("done") == 4 and not summary.failed
    store = Store(out, create=False)
    assert len(store.job_ids()) == 4 and store.failures() == {}
    for rec in store.records():
        assert set(rec["results"]) == {"val", "test"}
        for split in ("val", "test"):
            assert set(rec["results"][split]) == {"none", "text_swap", "brightness@2", "text_swap+brightness@2"}
            res = rec["results"][split]["none"]
            assert res["n"] == env["data"].sizes[split]
            assert set(res["metrics"]) == {"paper_v1", "strict_v1"}
            assert set(res["ci"]) == {"paper_v1.mIoU", "paper_v1.mAP", "paper_v1.AUROC"}
            assert res["ci"]["paper_v1.mIoU"]["low"] <= res["metrics"]["paper_v1"]["mIoU"] <= res["ci"]["paper_v1.mIoU"]["high"]
        prov = rec["provenance"]
        assert prov["packages"]["torch"] == torch.__version__.split("+")[0]
        assert prov["data_fingerprint"] == env["data"].fingerprint and prov["config_hash"].startswith(rec["job_id"])
        assert prov["metrics"]["version"] and len(prov["metrics"]["fingerprint"]) == 64
        assert set(prov["git"]) >= {"commit", "dirty"} and prov["duration_s"] >= 0
        assert rec["efficiency"]["params_total"] >= 0 and "latency_ms" in rec["efficiency"]
        assert store.verify(rec["job_id"]) == []


def test_stored_predictions_rescore_to_the_stored_metrics(env, ran):
    _, out, _ = ran
    store = Store(out, create=False)
    for rec in store.records():
        for split in ("val", "test"):
            gt = env["data"].load(split)
            for cond in ("none", "text_swap+brightness@2"):
                preds, meta = store.predictions(rec["job_id"], split, cond)
                assert preds.keys == gt.keys and meta["split_fingerprint"] == env["data"].split_fingerprints[split]
                again = score_all(preds.scores, np.asarray(gt.labels), preds.boxes, np.asarray(gt.boxes))
                stored = rec["results"][split][cond]["metrics"]
                assert set(again) == set(stored)
                for profile in again:
                    assert again[profile] == pytest.approx(stored[profile])


def test_controls_and_perturbations_change_what_a_text_model_sees(ran):
    _, out, _ = ran
    store = Store(out, create=False)
    text = next(r for r in store.records() if r["adapter"] == "text_only")
    clean, _ = store.predictions(text["job_id"], "test", "none")
    swapped, _ = store.predictions(text["job_id"], "test", "text_swap")
    bright, _ = store.predictions(text["job_id"], "test", "brightness@2")
    assert not np.allclose(clean.scores, swapped.scores)  # it reads the sentence
    np.testing.assert_allclose(clean.scores, bright.scores)  # and no pixels


def test_manifest_and_long_table(env, ran):
    suite, out, _ = ran
    manifest = json.loads((Path(out) / "suites" / "mini.json").read_text())
    assert manifest["conditions"] == ["none", "text_swap", "brightness@2", "text_swap+brightness@2"]
    assert [e["label"] for e in manifest["entries"]] == ["Prior", "Text"]
    assert [len(e["jobs"]) for e in manifest["entries"]] == [2, 2]
    assert manifest["data"]["fingerprint"] == env["data"].fingerprint
    df = load_results(out, suite="mini")
    assert len(df) == 4 * 2 * 4 * (3 + 10)  # jobs x splits x conditions x (paper + strict metrics)
    assert set(df.label) == {"Prior", "Text"} and df.value.notna().all()


def test_a_second_run_skips_everything(env, ran):
    suite, out, _ = ran
    before = len(Store(out).events())
    summary = run_suite(suite, env["data"], out, progress=False)
    assert summary.count("skipped") == 4 and summary.count("done") == 0
    assert len(Store(out).events()) == before


def test_dry_run_lists_status_without_running(env, ran):
    suite, out, _ = ran
    summary = run_suite(suite, env["data"], out, seeds=3, dry_run=True, progress=False)
    assert [p["status"] for p in summary.planned] == ["done", "done", "pending", "done", "done", "pending"]
    assert len(Store(out).job_ids()) == 4


def test_overwrite_modes_and_limit(env, ran, tmp_path):
    suite, out, _ = ran
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    store = Store(copy)
    ids = store.job_ids()
    text_id = next(r["job_id"] for r in store.records() if r["adapter"] == "text_only")
    (store.job_dir(text_id) / "predictions" / "val.none.parquet").unlink()
    summary = run_suite(suite, env["data"], copy, overwrite="only-missing", progress=False)
    assert summary.count("done") == 1 and store.verify(text_id) == []
    created = {i: store.record(i)["created"] for i in ids}
    summary = run_suite(suite, env["data"], copy, overwrite="always", limit_jobs=1, progress=False)
    assert summary.count("done") == 1
    changed = [i for i in ids if store.record(i)["created"] != created[i]]
    assert len(changed) == 1
    redone = store.record(changed[0])["results"]["test"]["none"]["metrics"]["paper_v1"]
    original = json.loads((Path(out) / "jobs" / changed[0] / "record.json").read_text())
    assert redone == pytest.approx(original["results"]["test"]["none"]["metrics"]["paper_v1"])
    with pytest.raises(RunError, match="--overwrite"):
        run_suite(suite, env["data"], copy, overwrite="sometimes")


def test_a_frozen_job_encodes_the_clean_validation_split_once(env, tmp_path, monkeypatch):
    """fit encodes val for model selection; the runner scores val on those features instead of
    encoding it again (controls and perturbations still re-encode)."""
    from ravar_bench import train as T
    from ravar_bench.data.batches import Controls

    base = write_baseline_tree(tmp_path, {"frozen": control_baseline(
        "frozen", "video_only", "dim = 16\nhidden = 16\nfreeze = true")},
        {"frozen1": SUITE.format(name="frozen1", efficiency="false", entries=entries("frozen"))})
    monkeypatch.setenv("RAVAR_BASELINES", str(base))
    encoded: list[tuple[str, bool]] = []
    original = T.FeatureCache.__init__

    def counting(self, model, loader, device):
        clean = loader.controls == Controls() and loader.perturb is None
        encoded.append((loader.split.meta.split, clean))
        original(self, model, loader, device)

    monkeypatch.setattr(T.FeatureCache, "__init__", counting)
    suite = load_suite("frozen1")
    summary = run_suite(suite, env["data"], tmp_path / "out", seeds=1, progress=False)
    assert not summary.failed, summary.failed
    others = len(suite_conditions(suite)) - 1  # text_swap, brightness, both: fresh features each
    assert encoded.count(("val", True)) == 1  # fit's; "none" on val reuses it
    assert encoded.count(("val", False)) == others == 3
    assert encoded.count(("test", True)) == 1 and encoded.count(("test", False)) == others


def test_a_failing_job_is_recorded_and_the_suite_goes_on(env, tmp_path):
    suite = load_suite("withbroken")
    summary = run_suite(suite, env["data"], tmp_path / "out", seeds=1, progress=False)
    assert summary.count("failed") == 1 and summary.count("done") == 1
    assert "boom" in summary.failed[0].error
    store = Store(tmp_path / "out")
    failure = store.failures()[summary.failed[0].job_id]
    assert failure["baseline"] == "broken" and "RuntimeError: boom" in failure["error"] and failure["traceback"]
    assert not store.has(summary.failed[0].job_id) and store.lock_owner(summary.failed[0].job_id) is None
    again = run_suite(suite, env["data"], tmp_path / "out", seeds=1, progress=False)
    assert again.count("failed") == 1 and again.count("skipped") == 1  # failures are retried


# -------------------------------------------------------------------------------- data specs
def test_data_spec_errors_are_clear(env, tmp_path):
    with pytest.raises(DataSpecError, match="not a folder, and not of the form synth"):
        resolve_data(str(tmp_path / "nothing"))
    with pytest.raises(DataSpecError, match="holds no prepared splits"):
        resolve_data(str(tmp_path))
    with pytest.raises(DataSpecError, match="size must be one of tiny, small, full"):
        resolve_data("synth:huge")
    with pytest.raises(DataSpecError, match="seed after '@'"):
        resolve_data("synth:tiny@x")


def test_synth_spec_generates_once_and_is_cached(env, monkeypatch):
    import ravar_bench.data.synth as synth

    calls = []

    def fake_generate(size, seed, out, **kw):
        calls.append((size, seed))
        paths = {}
        for i, split in enumerate(("train", "val", "test")):
            paths[split] = make_random_split(n_clips=3, seed=seed * 10 + i, split=split).save(Path(out) / "prepared" / split)
        return paths

    monkeypatch.setattr(synth, "generate", fake_generate, raising=False)
    first = resolve_data("synth:tiny@4", progress=False)
    second = resolve_data("synth:tiny@4", progress=False)
    assert calls == [("tiny", 4)] and first == second and first.spec == "synth:tiny@4"
    assert Path(first.paths["train"]).is_relative_to(cache_root() / "synth")
    assert resolve_data("synth:tiny@5", progress=False).fingerprint != first.fingerprint
    assert not [p for p in (cache_root() / "synth").iterdir() if p.name.startswith(".")]  # no temp left


def test_kept_jobs_made_from_another_adapter_source_are_flagged(env, ran, tmp_path):
    suite, out, _ = ran
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    store = Store(copy)
    rec_path = None
    for job_id in store.job_ids():
        rec = store.record(job_id)
        assert len(rec["provenance"]["adapter_source"]["sha256"]) == 64
        if rec["adapter"] == "text_only" and rec["seed"] == 1:
            rec_path = store.job_dir(job_id) / "record.json"
            rec["provenance"]["adapter_source"]["sha256"] = "0" * 64  # as if adapters/controls.py changed
            rec_path.write_text(json.dumps(rec))
    assert rec_path is not None
    summary = run_suite(suite, env["data"], copy, progress=False)
    assert summary.count("skipped") == 4 and summary.outdated == ["Text seed 1"]
