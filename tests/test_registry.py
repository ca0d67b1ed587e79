"""The registry: decorator, duplicate names, the type-hint parameter schema and its error messages,
unknown names, variant rows (bind/defaults), discovery of in-tree modules without a list, entry
points, and the same Registry class serving the fusion variants. Each test works on a private copy
of the registries."""
from __future__ import annotations

import sys
import textwrap
from typing import Literal

import pytest
import torch

import ravar_bench.adapters
from ravar_bench.adapters import fusion, registry
from ravar_bench.adapters.registry import AdapterError, get_adapter, list_adapters, register_adapter
from ravar_bench.protocol import Batch, DatasetInfo, ModelOutput, RavarModel
from ravar_bench.registry import Registry

INFO = DatasetInfo(num_frames=2, frame_size=(32, 32), key_frame_size=(32, 32), max_candidates=2,
                   object_classes=("person",), train_prior=(0.1,) * 80, mean_box=(0.2, 0.2, 0.6, 0.8))


@pytest.fixture(autouse=True)
def private_registry():
    """Built-ins imported once; whatever a test registers is gone after it."""
    with registry.ADAPTERS.isolated(), fusion.FUSIONS.isolated():
        yield


class Toy(RavarModel):
    """A toy adapter with one parameter of every kind the schema supports."""

    def __init__(self, info: DatasetInfo, *, depth: int = 2, rate: float = 0.5,
                 mode: Literal["fast", "slow"] = "fast", weights: str | None = None,
                 sizes: tuple[int, int] = (1, 2), flag: bool = False) -> None:
        super().__init__()
        self.config = dict(depth=depth, rate=rate, mode=mode, weights=weights, sizes=sizes, flag=flag)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def head(self, features, batch: Batch) -> ModelOutput:
        n = len(batch)
        return ModelOutput(self.w.expand(n, 80), self.w.expand(n, 4))


class NeedsName(Toy):
    def __init__(self, info: DatasetInfo, *, name: str) -> None:
        super().__init__(info)


def test_decorator_registers_and_builds():
    register_adapter("toy_adapter", domain="control", summary="toy")(Toy)
    spec = get_adapter("toy_adapter")
    assert spec.cls is Toy and spec.domain == "control" and spec.summary == "toy"
    assert "toy_adapter" in {s.name for s in list_adapters()}
    assert list(spec.parameters()) == ["depth", "rate", "mode", "weights", "sizes", "flag"]
    model = spec.build(INFO, {"depth": 3, "sizes": [4, 5]})
    assert model.config["depth"] == 3 and model.config["sizes"] == (4, 5)  # TOML list -> tuple


def test_summary_defaults_to_the_first_docstring_line():
    register_adapter("toy_doc", domain="control")(Toy)
    assert get_adapter("toy_doc").summary == "A toy adapter with one parameter of every kind the schema supports."


def test_same_class_may_register_twice_but_not_two_classes_under_one_name():
    register_adapter("toy_dup", domain="control")(Toy)
    register_adapter("toy_dup", domain="control")(Toy)  # re-import of the same module: fine

    class Other(Toy):
        pass

    with pytest.raises(AdapterError, match="'toy_dup' is registered twice"):
        register_adapter("toy_dup", domain="control")(Other)


def test_builtin_names_are_protected():
    with pytest.raises(AdapterError, match="registered twice"):
        register_adapter("aal_x3d", domain="AAL")(Toy)


def test_unknown_domain_and_non_models_are_refused():
    with pytest.raises(AdapterError, match="domain must be one of"):
        register_adapter("toy_bad", domain="audio")
    with pytest.raises(AdapterError, match="not a RavarModel subclass"):
        register_adapter("toy_bad", domain="control")(dict)


def test_unknown_adapter_lists_the_known_ones():
    with pytest.raises(AdapterError) as err:
        get_adapter("no_such_adapter")
    assert "unknown adapter 'no_such_adapter'" in str(err.value) and "aal_x3d" in str(err.value)


@pytest.mark.parametrize("params,message", [
    ({"depht": 3}, "unknown parameter 'depht' for adapter 'toy_v'; known: depth, flag, mode, rate, sizes, weights"),
    ({"depth": "3"}, "parameter 'depth' of adapter 'toy_v' must be int, got '3' (str)"),
    ({"depth": True}, "parameter 'depth' of adapter 'toy_v' must be int, got True (bool)"),
    ({"depth": 2.0}, "parameter 'depth' of adapter 'toy_v' must be int"),
    ({"rate": "0.1"}, "parameter 'rate' of adapter 'toy_v' must be float"),
    ({"mode": "medium"}, "parameter 'mode' of adapter 'toy_v' must be one of 'fast', 'slow', got 'medium'"),
    ({"weights": 3}, "parameter 'weights' of adapter 'toy_v' must be str or None, got 3 (int)"),
    ({"sizes": [1]}, "parameter 'sizes' of adapter 'toy_v' must be"),
    ({"sizes": [1, "x"]}, "parameter 'sizes' of adapter 'toy_v' must be"),
    ({"flag": 1}, "parameter 'flag' of adapter 'toy_v' must be bool, got 1 (int)"),
])
def test_validation_names_the_file_the_key_and_the_expected_type(params, message):
    register_adapter("toy_v", domain="control")(Toy)
    with pytest.raises(AdapterError) as err:
        get_adapter("toy_v").validate(params, "baselines/toy.toml [params]")
    assert str(err.value).startswith("baselines/toy.toml [params]: ")
    assert message in str(err.value)


def test_valid_values_pass():
    register_adapter("toy_ok", domain="control")(Toy)
    ok = {"depth": 1, "rate": 1, "mode": "slow", "weights": None, "sizes": (3, 4), "flag": True}
    assert get_adapter("toy_ok").validate(ok) == ok  # an int is a valid float


def test_missing_required_parameter_is_named():
    register_adapter("toy_req", domain="control")(NeedsName)
    with pytest.raises(AdapterError, match="adapter 'toy_req' needs parameter\\(s\\) name"):
        get_adapter("toy_req").build(INFO, {})
    assert get_adapter("toy_req").build(INFO, {"name": "x"}) is not None


def test_every_builtin_adapter_has_a_complete_schema():
    """All parameters keyword-only, hinted and defaulted: baseline files can omit any of them."""
    import inspect
    import typing

    for spec in list_adapters():
        if spec.origin != "builtin":
            continue
        hints = typing.get_type_hints(spec.cls.__init__)
        for name, param in spec.parameters().items():
            assert param.kind is param.KEYWORD_ONLY, f"{spec.name}.{name} must be keyword-only"
            assert name in hints, f"{spec.name}.{name} has no type hint"
            assert param.default is not inspect.Parameter.empty, f"{spec.name}.{name} has no default"


def test_unknown_names_get_a_did_you_mean():
    from ravar_bench.baselines import BaselineError, load_baseline, load_suite

    with pytest.raises(AdapterError, match=r"unknown adapter 'person_vt' \(did you mean 'person_vtr'\?\)"):
        get_adapter("person_vt")
    with pytest.raises(BaselineError, match=r"no such baseline file \(did you mean 'x3d'\?\)"):
        load_baseline("x3dd")
    with pytest.raises(BaselineError, match=r"no such suite file \(did you mean 'quickstart'\?\)"):
        load_suite("quickstrat")
    with pytest.raises(AdapterError) as err:
        get_adapter("zzzzzz")
    assert "did you mean" not in str(err.value)


# ------------------------------------------------------------------------ variant rows
def test_one_class_serves_several_names_through_bind_and_defaults():
    register_adapter("toy_slow", domain="control", bind={"mode": "slow"}, defaults={"depth": 5})(Toy)
    register_adapter("toy_fast", domain="control", bind={"mode": "fast"})(Toy)
    slow, fast = get_adapter("toy_slow"), get_adapter("toy_fast")
    assert slow.cls is fast.cls is Toy
    assert "mode" not in slow.parameters() and slow.parameters()["depth"].default == 5
    assert fast.parameters()["depth"].default == 2
    assert slow.build(INFO).config["mode"] == "slow" and slow.build(INFO).config["depth"] == 5
    assert slow.build(INFO, {"depth": 1}).config["depth"] == 1
    with pytest.raises(AdapterError, match="unknown parameter 'mode' for adapter 'toy_slow'"):
        slow.validate({"mode": "fast"})
    with pytest.raises(AdapterError, match="'toy_slow' is registered twice"):
        register_adapter("toy_slow", domain="control", bind={"mode": "fast"})(Toy)


def test_bind_and_defaults_must_fit_the_signature():
    with pytest.raises(AdapterError, match="bind/defaults colour do not fit Toy.__init__"):
        register_adapter("toy_bad", domain="control", bind={"colour": 1})(Toy)
    with pytest.raises(AdapterError, match="bind/defaults depth do not fit"):
        register_adapter("toy_bad", domain="control", defaults={"depth": "deep"})(Toy)


# ------------------------------------------------------------------------ discovery
TOY_ADAPTER_MODULE = textwrap.dedent('''
    import torch
    from ravar_bench.adapters.registry import register_adapter
    from ravar_bench.protocol import ModelOutput, RavarModel


    @register_adapter("dropped_toy", domain="control")
    class DroppedToy(RavarModel):
        """An adapter module dropped into the package; no list names it."""

        def __init__(self, info, *, width: int = 3) -> None:
            super().__init__()
            self.width = width
            self.w = torch.nn.Parameter(torch.zeros(1))

        def head(self, features, batch):
            n = len(batch)
            return ModelOutput(self.w.expand(n, 80), self.w.expand(n, 4))
''')


@pytest.fixture
def drop_module(monkeypatch, tmp_path):
    """Put ``<name>.py`` into an in-tree package (an extra folder on its ``__path__``)."""
    added: list[str] = []

    def drop(package, name: str, source: str) -> None:
        folder = tmp_path / package.__name__
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.py").write_text(source)
        if str(folder) not in package.__path__:
            monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
        added.append(f"{package.__name__}.{name}")

    yield drop
    for module in added:
        sys.modules.pop(module, None)


def test_an_adapter_module_dropped_into_the_package_is_found_by_name(drop_module):
    assert "dropped_toy" not in {s.name for s in list_adapters()}
    drop_module(ravar_bench.adapters, "dropped_toy", TOY_ADAPTER_MODULE)
    spec = get_adapter("dropped_toy")  # a miss rescans the package: the new module is imported
    assert spec.origin == "builtin" and spec.domain == "control" and list(spec.parameters()) == ["width"]
    assert spec.build(INFO, {"width": 5}).width == 5
    assert "dropped_toy" in {s.name for s in list_adapters()}


def test_the_first_lookup_imports_every_module_of_the_package(tmp_path, monkeypatch):
    """A fresh registry kind: modules are found by scanning, ``_private`` ones are skipped."""
    pkg = tmp_path / "toy_kinds"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from ravar_bench.registry import Registry\n"
        "WIDGETS = Registry('widget', package='toy_kinds', group='toy_kinds.widgets', error=ValueError)\n")
    (pkg / "alpha.py").write_text("from toy_kinds import WIDGETS\n\n@WIDGETS.register('alpha')\n"
                                  "def alpha():\n    return 'a'\n")
    (pkg / "_private.py").write_text("raise RuntimeError('private modules are not scanned')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import toy_kinds

        assert toy_kinds.WIDGETS.get("alpha")() == "a" and "alpha" in toy_kinds.WIDGETS
        with pytest.raises(ValueError, match=r"unknown widget 'alpah' \(did you mean 'alpha'\?\); known: alpha"):
            toy_kinds.WIDGETS.get("alpah")
    finally:
        for name in [m for m in sys.modules if m == "toy_kinds" or m.startswith("toy_kinds.")]:
            del sys.modules[name]


TOY_FUSION_MODULE = textwrap.dedent('''
    from ravar_bench.adapters.fusion.base import register_fusion
    from ravar_bench.adapters.fusion.basic import LateSum


    @register_fusion("vtoy", "toy_sum", aliases=("toy",))
    class ToySum(LateSum):
        """A toy variant dropped into the fusion package. Late sum under another id."""
''')


def test_fusion_variants_are_served_by_the_same_registry_class(drop_module):
    assert type(fusion.FUSIONS) is type(registry.ADAPTERS) is Registry
    drop_module(fusion, "toy_fusion", TOY_FUSION_MODULE)
    spec = fusion.fusion_spec("TOY")  # alias, case-insensitive
    assert (spec.id, spec.name, spec.aliases) == ("vtoy", "toy_sum", ("toy",))
    assert spec.summary == "A toy variant dropped into the fusion package."
    assert fusion.build_fusion("toy_sum", 8, average=True).average is True
    assert spec in fusion.list_fusions()
    with pytest.raises(fusion.FusionError, match=r"unknown fusion variant 'toy_summ' \(did you mean 'toy_sum'\?\)"):
        fusion.fusion_spec("toy_summ")
    with pytest.raises(fusion.FusionError, match="'late_sum' is registered twice"):
        fusion.register_fusion("vtoy2", "late_sum")(type("Other", (spec.cls,), {}))


def test_entry_points_register_adapters_and_fusions(tmp_path, monkeypatch):
    """A distribution on sys.path that declares both groups (what pip writes for a plug-in)."""
    (tmp_path / "toy_plugin.py").write_text(TOY_ADAPTER_MODULE.replace(
        '@register_adapter("dropped_toy", domain="control")', "") + TOY_FUSION_MODULE.replace(
        '@register_fusion("vtoy", "toy_sum", aliases=("toy",))', "").replace(
        "class ToySum(LateSum):", "class ToySum(LateSum):\n    variant_name = 'plug_sum'"))
    dist = tmp_path / "toy_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ravar_bench.adapters]\nplug_adapter = toy_plugin:DroppedToy\n\n"
                                           "[ravar_bench.fusions]\nvplug = toy_plugin:ToySum\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        spec = get_adapter("plug_adapter")
        assert spec.origin == "entry point (toy-plugin)" and spec.domain == "external"
        assert spec.build(INFO).width == 3
        plug = fusion.fusion_spec("plug_sum")
        assert plug.id == "vplug" and plug.cls.__module__ == "toy_plugin"
        assert fusion.build_fusion("vplug", 8).d == 8
    finally:
        sys.modules.pop("toy_plugin", None)
