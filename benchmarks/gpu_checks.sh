#!/usr/bin/env bash
# Everything that needs a GPU, in one run of at most 8 minutes: the CUDA tests (including the
# no-host-sync check of the training step), then the speed figures of benchmarks/RESULTS.md:
# the IM pipeline, the eval sweep, the training step and IM epoch (eager and captured with
# torch.compile reduce-overhead), and the whole paper study extrapolated from a few epochs.
#
#   WHEELS=/path/to/wheels bash benchmarks/gpu_checks.sh [PART...] 2>&1 | tee gpu_checks.log
#
# PARTs: deps tests pipeline sweep steps study (default: all of these, in this order), and
# autotune (not by default: `--compile max-autotune` compiles for many minutes). `deps` alone
# only checks (and installs) the packages; it needs no GPU.
# deps: the packages the selected parts import. Many GPU nodes have torch but not the notebook
# stack (papermill, jupytext, ipykernel, nbclient, ipywidgets, pyyaml) or submitit; whatever is
# missing is installed from the wheels in $WHEELS (no network: pip --no-index) into $DEPS (default
# ${TMPDIR:-/tmp}/imlib_gpu_deps), which goes first on PYTHONPATH. Fill the folder on a machine
# with internet (same OS, architecture and Python minor version as the GPU node):
#   pip download --only-binary=:all: --python-version 3.12 -d wheels \
#       papermill jupytext ipykernel nbclient ipywidgets submitit
# Other settings: PYTHON (default python3), BUDGET_S (default 480: a part that would start with
# under 20 s left is skipped, a running one is stopped at the budget), STUDY_ARGS (default
# "--epochs 3 --seeds 1", see bench_study.py --help), OUT (when set: the whole log,
# timings.tsv and bench_study.json are written there).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
PY=${PYTHON:-python3}
DEPS=${DEPS:-${TMPDIR:-/tmp}/imlib_gpu_deps}
BUDGET_S=${BUDGET_S:-480}
export PYTHONPATH="$PWD:$DEPS${PYTHONPATH:+:$PYTHONPATH}" TQDM_DISABLE=1 PYTHONUNBUFFERED=1
parts=("${@:-deps tests pipeline sweep steps study}")
want() { [[ " ${parts[*]} " == *" $1 "* ]]; }
if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    exec > >(tee "$OUT/gpu_checks.log") 2>&1
fi
date -u

# --- deps: what the selected parts import, installed from $WHEELS when missing ---------------
modules=(torch torchvision numpy pandas matplotlib seaborn sklearn skimage yaml tqdm submitit)
{ want deps || want tests; } && modules+=(pytest torchmetrics)
{ want deps || want study; } && modules+=(papermill jupytext ipykernel nbclient ipywidgets)
missing() {  # the import names among "$@" that $PY cannot find
    "$PY" -c 'import importlib.util as u, sys
print(" ".join(m for m in sys.argv[1:] if u.find_spec(m) is None))' "$@"
}
pip_name() {
    case $1 in yaml) echo pyyaml ;; sklearn) echo scikit-learn ;; skimage) echo scikit-image ;;
        *) echo "$1" ;; esac
}
command -v "$PY" > /dev/null || { echo "gpu_checks: no Python at PYTHON=$PY"; exit 2; }
found=$(missing "${modules[@]}") || exit 2
read -ra absent <<< "$found"
if (( ${#absent[@]} )); then
    names=()
    for module in "${absent[@]}"; do names+=("$(pip_name "$module")"); done
    pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    how="Fill a wheels folder on a machine with internet (same OS and architecture), copy it
here and run again with WHEELS=that/folder:
  pip download --only-binary=:all: --python-version $pyver -d wheels ${names[*]}"
    if [[ -z "${WHEELS:-}" || ! -d "${WHEELS:-}" ]]; then
        echo "gpu_checks: $PY lacks ${names[*]}, and WHEELS=${WHEELS:-} is not a folder of wheels."
        echo "$how"
        exit 2
    fi
    echo "deps: installing ${names[*]} from $WHEELS into $DEPS"
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install --quiet --no-index \
            --find-links "$WHEELS" --target "$DEPS" "${names[@]}"; then
        echo "gpu_checks: pip could not install ${names[*]} from $WHEELS (a wheel or one of its"
        echo "dependencies is missing there, or built for another Python or platform). $how"
        exit 2
    fi
    found=$(missing "${modules[@]}") || exit 2
    read -ra absent <<< "$found"
    if (( ${#absent[@]} )); then
        echo "gpu_checks: still not importable after the install: ${absent[*]}"
        exit 2
    fi
fi
echo "deps: all importable (${modules[*]})"
if want deps || want study; then
    # papermill runs the kernel named python3: give it one that starts this very Python (with
    # PYTHONPATH inherited), ahead of any python3 kernelspec of another interpreter.
    export JUPYTER_PATH="$DEPS/jupyter/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
    "$PY" -m ipykernel install --prefix "$DEPS/jupyter" --name python3 > /dev/null || exit 2
fi
if ! [[ " ${parts[*]} " =~ [[:space:]](tests|pipeline|sweep|steps|study|autotune)[[:space:]] ]]
then
    exit 0  # deps alone
fi

# --- the checks -------------------------------------------------------------------------------
command -v nvidia-smi > /dev/null \
    && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$PY" -c "import sys, torch, torchvision
print('torch', torch.__version__, 'torchvision', torchvision.__version__)
sys.exit(None if torch.cuda.is_available() else 'gpu_checks: torch sees no CUDA device; every '
         'part but deps needs one')" || exit 2
[[ -n "${OUT:-}" ]] && printf 'part\tseconds\texit\n' > "$OUT/timings.tsv"
summary=()
failed=0
check() {  # check NAME COMMAND...: run it within what is left of BUDGET_S, time it
    local name=$1 left=$((BUDGET_S - SECONDS)) start=$SECONDS rc
    shift
    if (( left < 20 )); then
        summary+=("$(printf '%-16s %5s    skipped: under 20 s of the %d s budget left' "$name" - "$BUDGET_S")")
        failed=$((failed + 1))
        return
    fi
    echo; echo "=== $name: $*"
    timeout -k 10 "$left" "$@"
    rc=$?
    local took=$((SECONDS - start)) verdict=ok
    if (( rc == 124 )); then verdict="stopped at the $BUDGET_S s budget"
    elif (( rc != 0 )); then verdict="FAILED (exit $rc)"; fi
    (( rc == 0 )) || failed=$((failed + 1))
    summary+=("$(printf '%-16s %5d s  %s' "$name" "$took" "$verdict")")
    [[ -n "${OUT:-}" ]] && printf '%s\t%d\t%d\n' "$name" "$took" "$rc" >> "$OUT/timings.tsv"
}
if want tests; then
    # the test files with tests that need CUDA (skipped elsewhere); -k keeps those tests
    mapfile -t cuda_files < <(grep -l "skipif(not torch.cuda.is_available()" tests/test_*.py)
    check tests "$PY" -m pytest -q -p no:cacheprovider -rs "${cuda_files[@]}" -k "cuda or gpu"
fi
want pipeline && check pipeline "$PY" benchmarks/bench_pipeline.py --device cuda
want sweep && check sweep "$PY" benchmarks/bench_eval_sweep.py --device cuda --model resnet18
step=("$PY" benchmarks/bench_train_step.py --device cuda --model resnet18 --amp --classes 100
      --per-class 500 --epoch)
if want steps; then
    check steps-eager "${step[@]}"
    check steps-captured "${step[@]}" --compile reduce-overhead
fi
want autotune && check steps-autotune "${step[@]}" --compile max-autotune
if want study; then
    read -ra study_args <<< "${STUDY_ARGS:---epochs 3 --seeds 1}"
    study=("$PY" benchmarks/bench_study.py --device cuda "${study_args[@]}")
    [[ -n "${OUT:-}" ]] && study+=(--out "$OUT/bench_study.json")
    check study "${study[@]}"
fi

echo; echo "=== summary ($(date -u), $SECONDS s of the $BUDGET_S s budget)"
printf '%s\n' "${summary[@]}"
(( failed == 0 )) || { echo "$failed part(s) failed or were skipped"; exit 1; }
