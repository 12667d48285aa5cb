#!/usr/bin/env bash
# GPU check of otmap on a CUDA machine that has only this repository, in at most 8 minutes:
#   1. install: a Python with CUDA torch (the current one if it has it, else the venv .venv,
#      created if missing), then `pip install -e '.[dev]'` (torch from the default index if
#      missing); src/ is on PYTHONPATH as well, so the later parts run even if pip cannot;
#   2. tests:   the CUDA tests (`pytest -k cuda`);
#   3. measure: steps/s and peak CUDA memory of otm-mnist-32 and otm-celeba-64 on synthetic
#      data, fp32/bf16/auto x compile off/on (benchmarks/gpu_check.py);
#   4. nccl:    with 2 or more GPUs, `otmap train gaussian-8blobs --nproc 2` for 20 steps;
# then one JSON report: per part its exit status (124/137: timed out), seconds and log tail,
# and the measurements.
#
# usage: benchmarks/gpu_check.sh [REPORT.json]      (default: gpu_check.json)
set -uo pipefail

report=$(realpath -m "${1:-gpu_check.json}")
cd "$(dirname "$0")/.." || exit 1
work=$(mktemp -d -t otmap-gpu-check-XXXXXX)
deadline=$((SECONDS + 470))  # the whole check, report included (10 s of slack for kills)
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

# part NAME LIMIT RESERVE CMD...: run CMD with a timeout of LIMIT seconds, cut so that RESERVE
# seconds of the 8 minutes stay for what follows; its output in $work/NAME.log, its exit
# status in NAME.rc (124: timed out; 125: no time was left) and its seconds in NAME.seconds
part() {
    local name=$1 limit=$2 reserve=$3 start=$SECONDS
    shift 3
    local left=$((deadline - SECONDS - reserve))
    ((limit > left)) && limit=$left
    echo "gpu_check: $name (at most ${limit}s)" >&2
    if ((limit < 5)); then
        echo "no time left" >"$work/$name.log"
        echo 125 >"$work/$name.rc"
    else
        timeout --kill-after=5 "$limit" "$@" >"$work/$name.log" 2>&1
        echo $? >"$work/$name.rc"
    fi
    echo $((SECONDS - start)) >"$work/$name.seconds"
}

has_cuda_torch() {
    "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
}

py=python3
if ! has_cuda_torch "$py"; then
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    [[ -x .venv/bin/python ]] && py=.venv/bin/python  # else the parts fail, and say why
fi
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
nccl_reserve=$((gpus >= 2 ? 90 : 0))

part install 240 $((150 + nccl_reserve)) "$py" -m pip install -e '.[dev]'
part tests 90 $((120 + nccl_reserve)) "$py" -m pytest -q -p no:cacheprovider -k cuda tests
part measure 300 $((20 + nccl_reserve)) \
    "$py" benchmarks/gpu_check.py --device cuda --out "$work/measure.json"
if ((gpus >= 2)); then
    part nccl 80 20 "$py" -m otmap train gaussian-8blobs --nproc 2 train.steps=20 \
        train.device=cuda --out "$work/nccl-run" --quiet
fi

"$py" benchmarks/gpu_check.py --collect "$work" --out "$report"
status=$?
echo "gpu_check: report in $report (parts in $work)" >&2
exit $status
