#!/usr/bin/env bash
# Everything that needs a GPU, in one run: the CUDA tests (including the no-host-sync check of
# the training step), then the speed figures of benchmarks/RESULTS.md. Run from the repository
# root on a machine with torch, torchvision, pytest, scikit-learn, scikit-image, torchmetrics.
#   bash benchmarks/gpu_checks.sh [tests] [pipeline] [steps] [sweep] 2>&1 | tee gpu_checks.log
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TQDM_DISABLE=1 PYTHONUNBUFFERED=1
parts=("${@:-tests pipeline steps sweep}")
want() { [[ " ${parts[*]} " == *" $1 "* ]]; }
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
if want tests; then
    python3 -m pytest -q -p no:cacheprovider -rs tests/test_nmi.py tests/test_degradations.py \
        tests/test_train.py -k "cuda or gpu"
fi
want pipeline && python3 benchmarks/bench_pipeline.py --device cuda
if want steps; then
    step="python3 benchmarks/bench_train_step.py --device cuda --model resnet18 --amp --classes 100 --per-class 500"
    $step --augment-batches 1
    $step --epoch
    $step --compile --epoch
fi
want sweep && python3 benchmarks/bench_eval_sweep.py --device cuda --model resnet18
