"""Optional paraphrase training: every description is kept from the RefAVA pickles to the prepared
split; with ``paraphrases = false`` (the default, the official recipe) nothing changes, not even a
job id; with ``true`` training draws one description per instance and epoch, deterministically,
and evaluation still reads ``v[0]``."""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_random_split, write_baseline_tree
from ravar_bench import train as T
from ravar_bench.baselines import load_suite
from ravar_bench.data.batches import BatchLoader, paraphrase_slots
from ravar_bench.data.prepare import prepare_refava
from ravar_bench.data.prepared import PreparedDataError, PreparedSplit
from ravar_bench.data.refava import RefAVAError, load_annotations, pickle_name, validate_folder
from ravar_bench.data.safe_pickle import safe_load
from ravar_bench.protocol import Batch, ModelOutput, RavarModel
from ravar_bench.train import TrainConfig, config_dict, evaluate, fit
from refava_fixtures import default_candidates, write_pickle, write_refava

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

#: the training options every job id hashed before ``paraphrases`` existed
PUBLISHED_OPTIONS = {
    "epochs", "batch_size", "eval_batch_size", "lr", "weight_decay", "betas", "eps", "warmup",
    "schedule", "grad_clip", "encoder_lr_scale", "cls_weight", "box_weight", "seed", "select_metric",
    "eval_every", "cache_features", "device",
}


def three(text: str) -> list[str]:
    return [text, f"{text}, seen again", f"once more: {text}"]


def with_paraphrases(split: PreparedSplit, counts: list[int] | None = None) -> PreparedSplit:
    """``split`` whose instance i has ``counts[i]`` descriptions (default 3), ``texts[i]`` first."""
    counts = counts or [3] * len(split)
    paras = [three(t)[:c] for t, c in zip(split.texts, counts)]
    return replace(split, paraphrases=paras)


def _write_three(root: Path) -> None:
    """The fixture folder with three descriptions per person."""
    path = root / pickle_name("train", "description")
    d = safe_load(path)
    write_pickle(path, {k: three(v[0]) for k, v in d.items()})


# -------------------------------------------------------------------------------------- loader
def test_loader_keeps_every_description(tmp_path: Path) -> None:
    spec = write_refava(tmp_path)
    _write_three(tmp_path)
    anns = load_annotations(tmp_path, "train")
    assert [a.text for a in anns] == [i.text for i in spec.instances]  # text stays v[0]
    assert [a.paraphrases for a in anns] == [tuple(three(i.text)) for i in spec.instances]


@pytest.mark.parametrize("value, fragment", [
    (["the man", 42, "the tall man"], "description v[1] must be a string, got int"),
    (["the man", "the tall man", "  "], "description v[2] is empty"),
])
def test_loader_rejects_a_bad_paraphrase_naming_key_and_index(tmp_path: Path, value, fragment) -> None:
    write_refava(tmp_path)
    key = "vidA___902___1"
    path = tmp_path / pickle_name("train", "description")
    d = safe_load(path)
    d[key] = value
    write_pickle(path, d)
    problems = validate_folder(tmp_path, splits=("train",))
    assert len(problems) == 1, problems
    assert Path(problems[0].file).name == path.name and problems[0].key == key
    assert problems[0].field == "text" and fragment in problems[0].message
    with pytest.raises(RefAVAError) as err:
        load_annotations(tmp_path, "train")
    assert path.name in str(err.value) and key in str(err.value) and fragment in str(err.value)


# ------------------------------------------------------------------------------ prepared splits
def _prepare(root: Path, out: Path) -> PreparedSplit:
    return prepare_refava(root, "train", out, frame_size=(24, 32), key_frame_size=(20, 28),
                          progress=False, workers=1)


def test_prepared_split_round_trips_paraphrases(tmp_path: Path) -> None:
    spec = write_refava(tmp_path / "src", candidates=default_candidates())
    _write_three(tmp_path / "src")
    out = tmp_path / "prepared"
    made = _prepare(tmp_path / "src", out)
    loaded = PreparedSplit.load(out)
    expected = [three(i.text) for i in spec.instances]
    assert made.paraphrases == expected and loaded.paraphrases == expected
    assert loaded.texts == [i.text for i in spec.instances]
    assert loaded.paraphrase_counts().tolist() == [3] * len(spec.instances)
    assert loaded.subset([3, 1]).paraphrases == [expected[3], expected[1]]


def test_old_prepared_folders_still_load_and_are_refreshed(tmp_path: Path) -> None:
    write_refava(tmp_path / "src")
    _write_three(tmp_path / "src")
    out = tmp_path / "prepared"
    fresh = _prepare(tmp_path / "src", out)
    # an old folder: instances.json as written before paraphrases were stored
    inst = json.loads((out / "instances.json").read_text())
    del inst["paraphrases"]
    (out / "instances.json").write_text(json.dumps(inst))
    old = PreparedSplit.load(out)
    assert old.paraphrases is None and old.texts == fresh.texts
    assert old.fingerprint() == fresh.fingerprint()  # no format bump: job identities are kept
    with pytest.raises(PreparedDataError, match="stores no paraphrases") as err:
        old.paraphrase_counts()
    assert str(out) in str(err.value)
    with pytest.raises(PreparedDataError, match=str(out)):  # paraphrase training refuses, naming it
        BatchLoader(old, frozenset({"text"}), 2, text="sample")
    # preparing again refreshes it (same fingerprint), and the paraphrases are back
    again = _prepare(tmp_path / "src", out)
    assert again.paraphrases == fresh.paraphrases and again.fingerprint() == fresh.fingerprint()


def test_prepared_split_rejects_paraphrases_not_starting_with_the_text() -> None:
    split = make_random_split(n_clips=2)
    bad = [["something else"]] + [[t] for t in split.texts[1:]]
    with pytest.raises(PreparedDataError, match="paraphrases"):
        replace(split, paraphrases=bad)


# -------------------------------------------------------------------------------------- batches
def test_default_batches_read_v0_and_do_not_depend_on_the_paraphrases() -> None:
    plain = make_random_split(n_clips=4)
    para = with_paraphrases(plain)
    rows = np.arange(len(plain))
    for split in (plain, para):
        loader = BatchLoader(split, frozenset({"text"}), 3, shuffle=True, seed=5)
        assert loader.text_slots() is None
        assert loader.make_batch(rows).text == plain.texts
        assert [b.text for b in loader] == [b.text for b in BatchLoader(plain, frozenset({"text"}), 3,
                                                                        shuffle=True, seed=5)]
    assert BatchLoader(para, frozenset({"text"}), 3, text=0).make_batch(rows).text == plain.texts


def test_sampled_paraphrases_vary_by_epoch_and_are_deterministic() -> None:
    split = with_paraphrases(make_random_split(n_clips=10), counts=[3] * 18 + [1, 2])
    draws = [paraphrase_slots(split, seed=3, epoch=e) for e in range(6)]
    assert all(np.array_equal(d, paraphrase_slots(split, seed=3, epoch=e)) for e, d in enumerate(draws))
    assert not all(np.array_equal(draws[0], d) for d in draws[1:])  # epochs draw differently
    assert not np.array_equal(draws[0], paraphrase_slots(split, seed=4, epoch=0))
    stacked = np.stack(draws)
    assert stacked.min() == 0 and stacked[:, :18].max() == 2  # uniform over each instance's own
    assert (stacked[:, 18] == 0).all() and stacked[:, 19].max() <= 1
    # a batch reads the drawn description, whatever the batch size
    texts = {}
    for batch_size in (1, 7):
        loader = BatchLoader(split, frozenset({"text"}), batch_size, shuffle=True, seed=3, text="sample")
        loader.epoch = 2
        got = {}
        for start in range(0, len(split), batch_size):
            rows = loader.order()[start:start + batch_size]
            got.update(zip(rows.tolist(), loader.make_batch(rows).text))
        texts[batch_size] = got
    assert texts[1] == texts[7]
    assert all(texts[1][i] == split.paraphrases[i][draws[2][i]] for i in range(len(split)))
    # iterating also reads epoch by epoch
    loader = BatchLoader(split, frozenset({"text"}), len(split), text="sample", seed=3)
    for e in range(3):
        (batch,) = list(loader)
        assert batch.text == [split.paraphrases[i][draws[e][i]] for i in range(len(split))]


# ---------------------------------------------------------------------------------- the loop
class SentenceProbe(RavarModel):
    """Frozen 'encoder' mapping a sentence to a code, a trainable head; it logs what it reads."""

    inputs: ClassVar[frozenset[str]] = frozenset({"text"})
    head_inputs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, split: PreparedSplit, frozen: bool) -> None:
        super().__init__()
        self.codes = {t: float(i) for i, t in enumerate(sorted({t for p in split.paraphrases or [split.texts]
                                                                for t in p}))}
        self.frozen_encoder = frozen
        self.lin = nn.Linear(1, 84)
        self.encoded: list[list[str]] = []
        self.heard: list[list[float]] = []

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.encoded.append(list(batch.text))
        return {"code": torch.tensor([[self.codes[t]] for t in batch.text])}

    def head(self, features: dict[str, torch.Tensor], batch: Batch) -> ModelOutput:
        self.heard.append(features["code"][:, 0].tolist())
        out = self.lin(features["code"])
        return ModelOutput(out[:, :80], out[:, 80:])


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "batch_size": 4, "eval_batch_size": 5, "lr": 1e-3,
                          "select_metric": "", **kw})


@pytest.mark.parametrize("frozen", [True, False])
def test_training_draws_paraphrases_and_evaluation_reads_v0(frozen: bool) -> None:
    train = with_paraphrases(make_random_split(n_clips=5, seed=0))
    val = with_paraphrases(make_random_split(n_clips=3, seed=1, split="val"))
    model = SentenceProbe(train, frozen)
    cfg = _cfg(paraphrases=True, seed=7)
    fit(model, train, None, cfg)
    n, per_epoch = len(train), -(-len(train) // 4)
    heard = [c for batch in model.heard for c in batch]
    assert len(heard) == 3 * n
    for epoch in range(3):  # what the head saw is each row's drawn paraphrase of that epoch
        loader = BatchLoader(train, frozenset(), 4, shuffle=True, seed=7)
        loader.epoch = epoch
        slots = paraphrase_slots(train, 7, epoch)
        want = [model.codes[train.paraphrases[i][slots[i]]] for i in loader.order()]
        assert heard[epoch * n:(epoch + 1) * n] == want
    assert len(model.heard) == 3 * per_epoch
    if frozen:  # the frozen encoder ran once per description index, never per epoch
        assert sorted(t for b in model.encoded for t in b) == sorted(t for p in train.paraphrases for t in p)
    model.encoded.clear()
    model.heard.clear()
    evaluate(model, val, cfg)  # evaluation: v[0] only
    assert [t for b in model.encoded for t in b] == val.texts


def test_paraphrases_off_trains_exactly_as_before() -> None:
    plain = make_random_split(n_clips=5, seed=0)
    runs = []
    for split in (plain, with_paraphrases(plain)):
        T.set_seed(0)
        model = SentenceProbe(with_paraphrases(plain), frozen=True)
        fit(model, split, None, _cfg(seed=2))
        runs.append((model.heard, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    on = SentenceProbe(with_paraphrases(plain), frozen=True)
    T.set_seed(0)
    fit(on, with_paraphrases(plain), None, _cfg(seed=2, paraphrases=True))
    assert on.heard != runs[0][0]


def test_paraphrase_training_on_data_without_them_names_the_folder(tmp_path: Path) -> None:
    make_random_split(n_clips=3).save(tmp_path / "train")
    old = PreparedSplit.load(tmp_path / "train")
    assert old.paraphrases is None
    model = SentenceProbe(old, frozen=True)
    with pytest.raises(PreparedDataError) as err:
        fit(model, old, None, _cfg(paraphrases=True))
    assert str(tmp_path / "train") in str(err.value) and "paraphrases" in str(err.value)


# ------------------------------------------------------------------------------ configuration
def test_switch_is_a_training_option() -> None:
    assert TrainConfig().paraphrases is False
    assert TrainConfig.from_dict({"paraphrases": True}).paraphrases is True
    with pytest.raises(ValueError, match="'paraphrases' must be bool"):
        TrainConfig.from_dict({"paraphrases": "yes"})


def test_job_identity_is_unchanged_when_off() -> None:
    from ravar_bench.data.specs import DataRef
    from ravar_bench.jobs import Job

    off = config_dict(TrainConfig.from_dict({"epochs": 15, "lr": 3e-3}))
    assert set(off) == PUBLISHED_OPTIONS
    assert off == {k: v for k, v in asdict(TrainConfig(epochs=15, lr=3e-3)).items() if k != "paraphrases"}
    on = config_dict(TrainConfig.from_dict({"epochs": 15, "lr": 3e-3, "paraphrases": True}))
    assert on == {**off, "paraphrases": True}
    data = DataRef("synth:small@0", {}, "0123456789abcdef", {}, {})

    def job(train: dict) -> Job:
        return Job(suite="s", entry=0, label="x", baseline={"name": "x"}, adapter="person_vtr",
                   params={}, train={**train, "betas": list(train["betas"])}, seed=0, data=data,
                   splits=("test",), conditions=("none",))

    assert "paraphrases" not in job(off).identity()["train"]
    assert job(on).identity()["train"]["paraphrases"] is True
    assert job(on).job_id != job(off).job_id


BASELINE = ('[baseline]\nname = "text"\nadapter = "text_only"\ndomain = "control"\ntitle = "Text"\n'
            '[params_tiny]\ntext_encoder = "tiny"\n')


@pytest.mark.parametrize("flag", [None, False, True])
def test_suite_jobs_carry_the_switch_only_when_on(tmp_path: Path, flag) -> None:
    """Through the runner: off (absent or false) leaves the resolved config, so the job id, as it
    was; on puts ``paraphrases = true`` into the identity."""
    from ravar_bench.data.specs import DataRef
    from ravar_bench.runner import expand

    line = "" if flag is None else f"paraphrases = {str(flag).lower()}\n"
    suite_text = ('[suite]\nname = "p"\ntitle = "P"\ndata = "synth:tiny"\nseeds = 1\nscale = "tiny"\n'
                  f'[train]\nepochs = 1\n{line}[[entries]]\nbaseline = "text"\n')
    root = write_baseline_tree(tmp_path, {"text": BASELINE}, {"p": suite_text})
    (job,) = expand(load_suite("p", root), DataRef("d", {}, "0123456789abcdef", {}, {}))
    assert ("paraphrases" in job.identity()["train"]) is bool(flag)
    assert set(job.train) - {"paraphrases"} == PUBLISHED_OPTIONS


def test_named_cpu_recipe_turns_it_on() -> None:
    suite = load_suite("quickstart_paraphrases")
    assert suite.train.get("paraphrases") is True
    quick = {e.baseline_name for e in load_suite("quickstart").entries}
    assert {e.baseline_name for e in suite.entries} <= quick
