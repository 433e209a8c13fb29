#!/usr/bin/env bash
# Runs one experiment on a GPU host: creates a venv if missing, installs recur
# with CUDA wheels ('pip install -e .[cuda12]' or '.[cuda13]') and starts it.
#
# For several hosts, run the same command on each with its own --process_id;
# the three multi-host flags are forwarded to the experiment, which passes them
# to jax.distributed.initialize().
#
# Examples:
#   launch/gpu.sh --experiment=sudoku_trm --variant=paper --workdir=/data/runs/sudoku
#   launch/gpu.sh --experiment=arc_trm --variant=paper --workdir=gs://b/arc \
#     --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0
set -euo pipefail

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
readonly REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

experiment=""
variant=""
workdir=""
cuda="12"
venv="${REPO_ROOT}/.venv"
python="python3"
skip_install=0
coordinator_address=""
num_processes=""
process_id=""
dry_run=0
extra_args=()

usage() {
  cat <<EOF
Usage: $(basename "$0") --experiment=EXP --workdir=DIR [options] [-- EXPERIMENT_ARGS...]

Creates the venv if missing, installs recur with 'pip install -e .[cudaN]',
then runs 'python -m experiments.EXP' in the foreground.

Required:
  --experiment=EXP             one of: ${EXPERIMENTS}.
  --workdir=DIR                run directory (local path or gs://...).

Options:
  --variant=VARIANT            config variant: --config=experiments/configs/EXP.py:VARIANT.
  --cuda=12|13                 CUDA major version of the jax wheels (default: ${cuda}).
  --venv=DIR                   virtual environment (default: ${venv}).
  --python=PYTHON              interpreter used to create the venv (default: ${python}).
  --skip_install               do not run pip (the venv must already have recur).
  --coordinator_address=H:P    multi-host: address of process 0.
  --num_processes=N            multi-host: number of hosts.
  --process_id=I               multi-host: this host's index in [0, N).
  --dry-run                    print every command instead of running it.
  -h, --help                   this message.

Everything after '--' is forwarded to the experiment (e.g. --config.seed=1).
EOF
}

while (( $# )); do
  case "$1" in
    --experiment=*) experiment="${1#*=}" ;;
    --variant=*) variant="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --cuda=*) cuda="${1#*=}" ;;
    --venv=*) venv="${1#*=}" ;;
    --python=*) python="${1#*=}" ;;
    --skip_install) skip_install=1 ;;
    --coordinator_address=*) coordinator_address="${1#*=}" ;;
    --num_processes=*) num_processes="${1#*=}" ;;
    --process_id=*) process_id="${1#*=}" ;;
    --dry-run|--dry_run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra_args=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

[[ -n "${experiment}" ]] || die "--experiment is required"
[[ " ${EXPERIMENTS} " == *" ${experiment} "* ]] \
  || die "unknown experiment '${experiment}' (one of: ${EXPERIMENTS})"
[[ -n "${workdir}" ]] || die "--workdir is required"
[[ "${cuda}" == "12" || "${cuda}" == "13" ]] || die "--cuda must be 12 or 13"

# The three multi-host flags only make sense together.
multi_host=()
if [[ -n "${coordinator_address}${num_processes}${process_id}" ]]; then
  [[ -n "${coordinator_address}" && -n "${num_processes}" && -n "${process_id}" ]] \
    || die "--coordinator_address, --num_processes and --process_id go together"
  [[ "${num_processes}" =~ ^[1-9][0-9]*$ ]] || die "--num_processes must be >= 1"
  [[ "${process_id}" =~ ^[0-9]+$ ]] && (( process_id < num_processes )) \
    || die "--process_id must be in [0, ${num_processes})"
  multi_host=(--coordinator_address="${coordinator_address}"
              --num_processes="${num_processes}" --process_id="${process_id}")
fi

cd "${REPO_ROOT}"
if [[ ! -x "${venv}/bin/python" ]]; then
  run "${python}" -m venv "${venv}"
fi
if (( ! skip_install )); then
  run "${venv}/bin/pip" install --upgrade pip
  run "${venv}/bin/pip" install -e ".[cuda${cuda}]"
fi

config="experiments/configs/${experiment}.py"
[[ -n "${variant}" ]] && config+=":${variant}"
run "${venv}/bin/python" -m "experiments.${experiment}" \
  --config="${config}" --workdir="${workdir}" ${multi_host[@]+"${multi_host[@]}"} \
  ${extra_args[@]+"${extra_args[@]}"}
