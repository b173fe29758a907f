#!/usr/bin/env bash
# Headless reproduction of the study, and the project's test entry point.
#
#   ./run_all.sh                          all notebooks on the smoke profile (minutes on a CPU)
#   ./run_all.sh --profile paper          the paper's runs (one GPU, CIFAR-100)
#   ./run_all.sh --profile cpu -p epochs 5   override one parameter (repeatable, echoed at start;
#                                         one the reference-code protocol pins is refused)
#   ./run_all.sh --fresh ...              delete what this profile's runs created for the selected
#                                         notebooks, never a folder that existed before (see --help)
#   ./run_all.sh --help                   every option
#   ./run_all.sh test [pytest args]       the test suite
#
# The environment: an active conda env built from environment.yml is used as it is; otherwise
# .venv is created (or reused) with `pip install -e ".[dev]"`.
set -euo pipefail
# Relative paths given with -p are the caller's: the pipeline reads them from this folder.
export IMLIB_CALLER_CWD="${IMLIB_CALLER_CWD:-$PWD}"
cd "$(dirname "${BASH_SOURCE[0]}")"

# pip, quiet: no version nag, no setuptools or script-location warnings, no lines about
# optional paths that do not exist here.
quiet_pip() {
    PYTHONWARNINGS=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip "$@" --quiet \
        --no-warn-script-location 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

bootstrap() {
    if [[ -n "${CONDA_PREFIX:-}" && -z "${VIRTUAL_ENV:-}" ]] && python -c "import imlib" 2>/dev/null; then
        PY=python
        return
    fi
    if [[ ! -x .venv/bin/python ]]; then
        echo "Creating .venv (first run: installs PyTorch and Jupyter, a few minutes)" >&2
        python3 -m venv .venv
    fi
    # Reinstall when pyproject.toml changed since the last install.
    if [[ ! -f .venv/.installed || pyproject.toml -nt .venv/.installed ]]; then
        quiet_pip install --upgrade pip >&2
        quiet_pip install -e ".[dev]" >&2
        # The kernel by its interpreter's full path: Jupytext then gives every notebook this
        # kernel when JupyterLab opens it (no "Select Kernel"); ipykernel's own spec says "python".
        .venv/bin/python -m ipykernel install --sys-prefix >/dev/null
        touch .venv/.installed
    fi
    PY=.venv/bin/python
}

# A damaged environment (a package removed or half installed) is one line with the fix, not an
# ImportError from deep inside the first notebook.
check_environment() {
    local missing
    missing=$("$PY" -c 'import importlib.util as u, sys
print(" ".join(m for m in sys.argv[1:] if u.find_spec(m) is None))' \
        torch papermill ipykernel nbclient jupytext yaml imlib 2>/dev/null) || missing="python"
    if [[ -n "$missing" ]]; then
        local fix="rm -rf .venv && ./run_all.sh"
        [[ "$PY" == python ]] && fix="conda env update -f environment.yml"
        echo "run_all.sh: the environment is damaged (cannot import: $missing); rebuild it: $fix" >&2
        exit 2
    fi
}

bootstrap
check_environment
if [[ "${1:-}" == "test" ]]; then
    shift
    unset IMLIB_CALLER_CWD  # the tests run the pipeline from folders of their own
    # One test process per core (at most 4), a module each at a time, so the notebook module's
    # tiny study runs beside the rest; one torch thread each, or the processes' threads contend
    # for the cores. `./run_all.sh test -n 0` runs every test in this process (for -s, pdb).
    workers=$("$PY" -c "import os
n = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
print(min(n, 4) if n > 1 else 0)")
    OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" exec "$PY" -m pytest -n "$workers" --dist loadfile "$@"
fi
exec "$PY" -m imlib.pipeline "$@"
