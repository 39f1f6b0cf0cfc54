#!/usr/bin/env bash
# The GPU checks of the issue tracker, in one run, on a machine with CUDA and a PyTorch
# that has torchvision, safetensors, tqdm, pytest and hypothesis beside it. It uses the
# source tree as it is (PYTHONPATH=src: nothing is installed, nothing is downloaded):
#
#   TP3NETS_DATA=/folder/holding/MNIST bash benchmarks/gpu_check.sh OUTDIR
#
# 1. the machine: nvidia-smi, torch, torchvision, CUDA;
# 2. benchmark 1 on the GPU: bench_fit_vs_reference.py --device cuda --repeats 3;
# 3. bench_overhead.py --device cuda (fit against a minimal hand loop, on the GPU);
# 4. profile_overhead.py --device cuda (torch.profiler over the same three kinds of run:
#    ops, kernel launches and synchronisations per batch, and the ops that differ);
# 5. bench_evaluate.py --device cuda (throughput on the 10,000 test images);
# 6. the whole test suite, in which every device-parametrised test gains a cuda case and
#    the fp16/GradScaler test runs.
#
# Every step writes its log (and JSON) into OUTDIR; a failing step does not stop the
# others, and the script exits non-zero if any step failed. Each step has a time limit
# (STEP_TIMEOUT seconds, default 240). STEPS picks some of them, e.g.
# STEPS="machine pytest" (default: all).
set -uo pipefail

OUT=${1:?usage: TP3NETS_DATA=DIR bash benchmarks/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
: "${TP3NETS_DATA:?set TP3NETS_DATA to the folder holding MNIST/raw/}"
export TP3NETS_DATA  # the tests' conftest reads it
PY=${PYTHON:-python3}
LIMIT=${STEP_TIMEOUT:-240}
FAILED=()

STEPS=${STEPS:-machine bench_fit_vs_reference bench_overhead profile_overhead bench_evaluate pytest}

step() {  # step NAME COMMAND...: run COMMAND with a time limit, its output into OUT/NAME.log
    local name=$1 t0=$SECONDS rc
    shift
    [[ " $STEPS " == *" $name "* ]] || return 0
    echo "== $name =="
    timeout "$LIMIT" "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    echo "-- $name: exit $rc, $((SECONDS - t0)) s"
    [[ $rc -eq 0 ]] || FAILED+=("$name (exit $rc)")
}

step machine bash -c "nvidia-smi -L; $PY - <<'EOF'
import torch, torchvision
print('torch', torch.__version__, '| torchvision', torchvision.__version__,
      '| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version())
print('GPU', torch.cuda.get_device_name(0), '| bf16', torch.cuda.is_bf16_supported())
assert torch.cuda.is_available()
EOF"
step bench_fit_vs_reference "$PY" benchmarks/bench_fit_vs_reference.py --device cuda \
    --repeats 3 --data "$TP3NETS_DATA" --json "$OUT/fit_vs_reference_cuda.json"
step bench_overhead "$PY" benchmarks/bench_overhead.py --device cuda --repeats 5 \
    --data "$TP3NETS_DATA" --json "$OUT/overhead_cuda.json"
step profile_overhead "$PY" benchmarks/profile_overhead.py --device cuda \
    --data "$TP3NETS_DATA" --json "$OUT/profile_overhead_cuda.json"
step bench_evaluate "$PY" benchmarks/bench_evaluate.py --device cuda --data "$TP3NETS_DATA" \
    --json "$OUT/evaluate_cuda.json"
step pytest "$PY" -m pytest -p no:cacheprovider -q

if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "FAILED: ${FAILED[*]}"
    exit 1
fi
echo "all GPU checks passed"
