"""The adapter registry: decorator, duplicate names, the type-hint parameter schema and its error
messages, unknown names. Each test works on a private copy of the registry."""
from __future__ import annotations

from typing import Literal

import pytest
import torch

from ravar_bench.adapters import registry
from ravar_bench.adapters.registry import AdapterError, get_adapter, list_adapters, register_adapter
from ravar_bench.protocol import Batch, DatasetInfo, ModelOutput, RavarModel

INFO = DatasetInfo(num_frames=2, frame_size=(32, 32), key_frame_size=(32, 32), max_candidates=2,
                   object_classes=("person",), train_prior=(0.1,) * 80, mean_box=(0.2, 0.2, 0.6, 0.8))


@pytest.fixture(autouse=True)
def private_registry(monkeypatch):
    list_adapters()  # import the built-ins once, then work on a copy
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


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
