"""mmaction2 1.2.0 from PyPI: the documented import failures still happen (so we notice when
upstream fixes them), and through the compat module every backbone family builds and runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("mmaction", reason="mmaction2 not installed (extra [mmaction])")

from ravar_bench.adapters import mmaction_compat  # noqa: E402
from ravar_bench.adapters.aal import FAMILIES  # noqa: E402


def run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)


PROBE = r"""
import json
from ravar_bench.adapters import mmaction_compat as m
import mmaction
errors = []
for step in ("plain", "drn_stub_only"):
    if step == "drn_stub_only":
        m._install_drn_stub()
    try:
        import mmaction.models
        errors.append(None)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
print(json.dumps(errors))
"""


@pytest.fixture(scope="module")
def import_errors() -> list:
    """Errors of `import mmaction.models` without the shim, then with only the DRN stub."""
    proc = run(PROBE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_plain_import_fails_on_the_missing_drn_package(import_errors):
    if import_errors[0] is None:
        pytest.skip("upstream fixed it: `import mmaction.models` works without the compat shim; "
                    "the DRN/multimodal workarounds in adapters/mmaction_compat.py can go")
    assert "No module named 'mmaction.models.localizers.drn'" in import_errors[0], import_errors[0]


def test_multimodal_import_fails_under_transformers_5_without_the_shim(import_errors):
    """With only the DRN stub, VindLU's import of removed transformers helpers still fails."""
    if import_errors[1] is None:
        pytest.skip("mmaction.models.multimodal imports under this transformers version; "
                    "the WITH_MULTIMODAL workaround is no longer needed")
    assert import_errors[1].startswith("ImportError") and "transformers" in import_errors[1], import_errors[1]


def test_import_mmaction_works_in_a_fresh_interpreter():
    proc = run("from ravar_bench.adapters.mmaction_compat import import_mmaction\n"
               "models = import_mmaction()\n"
               "from mmaction.registry import MODELS\n"
               "print(sorted(n for n in ('ResNet3d', 'ResNet3dSlowFast', 'X3D', 'MViT', "
               "'VisionTransformer') if MODELS.get(n) is not None))")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == str(
        sorted(["ResNet3d", "ResNet3dSlowFast", "X3D", "MViT", "VisionTransformer"]))


def test_import_is_idempotent_and_placeholders_raise_clearly():
    first = mmaction_compat.import_mmaction()
    assert mmaction_compat.import_mmaction() is first
    import mmaction
    from mmaction.models.localizers import DRN
    from mmaction.registry import MODELS

    if mmaction_compat._drn_missing(mmaction):
        assert DRN is mmaction_compat._MissingDRN
        with pytest.raises(NotImplementedError, match="issue 2714"):
            DRN()
    with pytest.raises(ImportError, match="multi-modal"):
        MODELS.build(dict(type="VindLUVQA"))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_backbone_family_builds_and_runs(family):
    cfg = FAMILIES[family].tiny(4, 32)
    backbone = mmaction_compat.build_backbone(cfg)
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, 4, 32, 32))
    first = out
    while isinstance(first, (tuple, list)):
        first = first[0]
    assert first.ndim == 5 and first.shape[0] == 2 and torch.isfinite(first).all()


def test_scope_prefix_and_missing_type():
    cfg = dict(FAMILIES["x3d"].tiny(4, 32), type="mmaction.X3D")
    assert type(mmaction_compat.build_backbone(cfg)).__name__ == "X3D"
    with pytest.raises(ValueError, match="no 'type'"):
        mmaction_compat.build_backbone({"depth": 18})
