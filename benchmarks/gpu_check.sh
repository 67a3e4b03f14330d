#!/usr/bin/env bash
# One GPU check, under 8 minutes on one GPU: profile the GPU, score the model on a reduced block test set and on
# zoo networks at batch 1, 32 and 128, run a short search, and record the figures in docs/gpu/<device>.json and
# the "GPU" section of docs/BENCHMARKS.md. Installs nothing; run it from anywhere inside the repository:
#
#   bash benchmarks/gpu_check.sh                       # cuda, everything into runs/gpu_check and docs/
#   bash benchmarks/gpu_check.sh --device cuda:1 --output-dir /tmp/gpu
#   bash benchmarks/gpu_check.sh --device cpu --quick  # the plumbing alone, tiny, on a machine without a GPU:
#                                                      # its figures go to the output dir, never to docs/
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEVICE=cuda
OUTPUT="$REPO/runs/gpu_check"
RESULTS=""   # unset: docs/gpu for a full GPU run, <output dir>/results for --quick or a CPU run
DOCUMENT=""  # unset: docs/BENCHMARKS.md for a full GPU run, a copy in the output dir for --quick or a CPU run
QUICK=0
PYTHON="${PYTHON:-python3}"
# Networks scored whole: CNNs of every era, transformers, hybrids and NNI hub samples. Predicting counts the
# features in a forward pass on the CPU, which at batch 128 takes seconds per 4-GFLOP network, so batch 128
# keeps one of those (resnet50) and the mobile-sized ones.
NETWORKS="resnet50,mobilenet_v2,mobilenet_v3_large,efficientnet_b0,convnext_tiny,deit_small,swin_tiny,mobilevit_s,efficientvit_b1,hub:proxylessnas:2"
NETWORKS_LARGE_BATCH="resnet50,mobilenet_v2,mobilenet_v3_large,efficientnet_b0,mobilevit_s,efficientvit_b1,hub:proxylessnas:2"
BATCHES="1 32 128"
LARGE_BATCH=128

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    echo "options: --device cuda|cuda:N|cpu  --output-dir DIR  --results-dir DIR  --document FILE  --quick"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) DEVICE="${2:?--device needs a value}"; shift 2 ;;
        --output-dir) OUTPUT="${2:?--output-dir needs a value}"; shift 2 ;;
        --results-dir) RESULTS="${2:?--results-dir needs a value}"; shift 2 ;;
        --document) DOCUMENT="${2:?--document needs a value}"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

if ! "$PYTHON" -c "import nni_latency" 2>/dev/null; then
    echo "gpu_check.sh: nni_latency is not importable by $PYTHON; install it first, from $REPO:" >&2
    echo "    pip install torch  # a CUDA build, see https://pytorch.org" >&2
    echo "    pip install -e '.[test]'" >&2
    exit 1
fi
if [[ "$DEVICE" == cuda* ]]; then
    if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check.sh: torch $("$PYTHON" -c 'import torch; print(torch.__version__)') sees no CUDA GPU" \
             "(torch.cuda.is_available() is False): run it on a machine with a GPU and a CUDA build of torch," \
             "or pass --device cpu --quick to check the plumbing" >&2
        exit 1
    fi
fi

if [[ $QUICK == 1 ]]; then  # tiny everything: checks that the steps run and the figures land, in about 2 minutes
    PROFILE_SET=(--set count=24 --set "resolutions=[7,14,28]" --set "channels=[8,64]" --set "extra_batches=[2,4]"
                 --set timing.min_run_time=0.01 --set timing.max_run_time=0.05)
    BLOCKS=(--config "$REPO/nni_latency/configs/testset_smoke.yaml")
    NETWORKS="squeezenet1_1,mobilenet_v3_small"
    NETWORKS_LARGE_BATCH="squeezenet1_1"
    BATCHES="1 4"
    LARGE_BATCH=4
    NETWORK_SET=(--image-size 64 --rounds 2)
else
    PROFILE_SET=()
    BLOCKS=(--config "$REPO/benchmarks/gpu_testset.yaml")  # about 130 blocks at batch 1, 8 and 32
    NETWORK_SET=(--rounds 3)
fi

# Only a full GPU run may write its figures into docs/: a quick or CPU run's figures would be labelled "on the GPU".
SCRATCH=0
[[ $QUICK == 1 || "$DEVICE" == cpu ]] && SCRATCH=1
mkdir -p "$OUTPUT"
if [[ $SCRATCH == 1 ]]; then
    RESULTS="${RESULTS:-$OUTPUT/results}"
    if [[ -z "$DOCUMENT" ]]; then
        DOCUMENT="$OUTPUT/BENCHMARKS.md"
        cp "$REPO/docs/BENCHMARKS.md" "$DOCUMENT"
    fi
    DOCS="$(cd "$REPO/docs" && pwd -P)"
    for target in "$RESULTS" "$DOCUMENT"; do
        mkdir -p "$(dirname "$target")"
        resolved="$(cd "$(dirname "$target")" && pwd -P)/$(basename "$target")"
        if [[ "$resolved/" == "$DOCS/"* ]]; then
            echo "gpu_check.sh: a --quick or CPU run does not write into docs/ ($target): its figures are not GPU" \
                 "figures; drop --results-dir/--document to keep them in $OUTPUT" >&2
            exit 2
        fi
    done
else
    RESULTS="${RESULTS:-$REPO/docs/gpu}"
    DOCUMENT="${DOCUMENT:-$REPO/docs/BENCHMARKS.md}"
fi
echo "gpu_check.sh: figures to $RESULTS and $DOCUMENT"
STARTED=$SECONDS
step() {  # step NAME COMMAND...: run it, say how long it took
    local name="$1" began=$SECONDS
    shift
    echo "== $name"
    "$@"
    echo "== $name: $((SECONDS - began)) s (total $((SECONDS - STARTED)) s)"
}

MODEL="$OUTPUT/profile/device_model.json"
step "profile on $DEVICE" nni-latency profile --device "$DEVICE" --output-dir "$OUTPUT/profile" --no-progress \
    "${PROFILE_SET[@]}"
step "held-out blocks" nni-latency evaluate --model "$MODEL" --output-dir "$OUTPUT/blocks" --no-progress "${BLOCKS[@]}"
for batch in $BATCHES; do
    selection="$NETWORKS"
    [[ $batch == "$LARGE_BATCH" ]] && selection="$NETWORKS_LARGE_BATCH"
    step "whole networks at batch $batch" nni-latency evaluate --model "$MODEL" --networks "$selection" \
        --batch "$batch" --device "$DEVICE" --output-dir "$OUTPUT/networks_b$batch" --no-progress "${NETWORK_SET[@]}"
done
ACCELERATOR=gpu
[[ "$DEVICE" == cpu ]] && ACCELERATOR=cpu
step "short search" nni-latency search --config "$REPO/examples/fbnet_search/smoke.yaml" \
    --set "latency.device_model=$MODEL" --set "trainer.accelerator=$ACCELERATOR" --output-dir "$OUTPUT/search"

cd "$REPO"
"$PYTHON" benchmarks/gpu_section.py collect "$OUTPUT" --output "$RESULTS" --seconds "$((SECONDS - STARTED))"
"$PYTHON" benchmarks/gpu_section.py update "$DOCUMENT" --results "$RESULTS"
echo "gpu_check.sh: done in $((SECONDS - STARTED)) s"
