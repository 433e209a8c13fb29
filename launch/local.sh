#!/usr/bin/env bash
# Runs one experiment on a laptop or CPU box: venv + 'pip install -e .' + run.
#
# --fake_devices=N makes XLA expose N CPU devices, so the sharded code paths
# run as on an N-chip host. --processes=N starts N local processes that form a
# real multi-process jax.distributed run over localhost and waits for all.
#
# Examples:
#   launch/local.sh --experiment=sudoku_trm --variant=smoke --workdir=/tmp/sudoku
#   launch/local.sh --experiment=sudoku_trm --variant=smoke --workdir=/tmp/s2 \
#     --fake_devices=4 --processes=2
set -euo pipefail

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
readonly REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

experiment=""
variant=""
workdir=""
venv="${REPO_ROOT}/.venv"
python="python3"
skip_install=0
fake_devices=""
processes=""
port="12355"
dry_run=0
extra_args=()

usage() {
  cat <<EOF
Usage: $(basename "$0") --experiment=EXP --workdir=DIR [options] [-- EXPERIMENT_ARGS...]

Creates the venv if missing, runs 'pip install -e .', then runs
'python -m experiments.EXP' on the CPU.

Required:
  --experiment=EXP     one of: ${EXPERIMENTS}.
  --workdir=DIR        run directory.

Options:
  --variant=VARIANT    config variant: --config=experiments/configs/EXP.py:VARIANT.
  --venv=DIR           virtual environment (default: ${venv}).
  --python=PYTHON      interpreter used to create the venv (default: ${python}).
  --skip_install       do not run pip (the venv must already have recur).
  --fake_devices=N     XLA_FLAGS=--xla_force_host_platform_device_count=N
                       (N CPU devices per process).
  --processes=N        start N processes on this machine, coordinated over
                       localhost:PORT (--coordinator_address/--num_processes/
                       --process_id), each logging to WORKDIR/logs/process_I.log
                       and to the console with a [pI] prefix; waits for all and
                       fails if any fails.
  --port=PORT          coordinator port for --processes (default: ${port}).
  --dry-run            print every command instead of running it.
  -h, --help           this message.

Everything after '--' is forwarded to the experiment (e.g. --config.seed=1).
EOF
}

while (( $# )); do
  case "$1" in
    --experiment=*) experiment="${1#*=}" ;;
    --variant=*) variant="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --venv=*) venv="${1#*=}" ;;
    --python=*) python="${1#*=}" ;;
    --skip_install) skip_install=1 ;;
    --fake_devices=*) fake_devices="${1#*=}" ;;
    --processes=*) processes="${1#*=}" ;;
    --port=*) port="${1#*=}" ;;
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
if [[ -n "${fake_devices}" ]]; then
  [[ "${fake_devices}" =~ ^[1-9][0-9]*$ ]] || die "--fake_devices must be >= 1"
fi
if [[ -n "${processes}" ]]; then
  [[ "${processes}" =~ ^[1-9][0-9]*$ ]] || die "--processes must be >= 1"
fi

cd "${REPO_ROOT}"
if [[ ! -x "${venv}/bin/python" ]]; then
  run "${python}" -m venv "${venv}"
fi
if (( ! skip_install )); then
  run "${venv}/bin/pip" install --upgrade pip
  run "${venv}/bin/pip" install -e .
fi

# Only the CPU backend, even where a GPU wheel happens to be installed.
env_vars=(JAX_PLATFORMS=cpu)
if [[ -n "${fake_devices}" ]]; then
  # Appended so that XLA flags the user already set are kept.
  env_vars+=("XLA_FLAGS=${XLA_FLAGS:+${XLA_FLAGS} }--xla_force_host_platform_device_count=${fake_devices}")
fi

config="experiments/configs/${experiment}.py"
[[ -n "${variant}" ]] && config+=":${variant}"
exp_cmd=(env "${env_vars[@]}" "${venv}/bin/python" -m "experiments.${experiment}"
         --config="${config}" --workdir="${workdir}")

if [[ -z "${processes}" ]]; then
  run "${exp_cmd[@]}" ${extra_args[@]+"${extra_args[@]}"}
  exit 0
fi

# N processes on localhost, each a jax.distributed peer.
log_dir="${workdir}/logs"
run mkdir -p "${log_dir}"
pids=()
stop_children() {
  local pid
  for pid in ${pids[@]+"${pids[@]}"}; do
    kill "${pid}" 2>/dev/null || true
  done
}
trap 'stop_children; exit 130' INT TERM
for (( i = 0; i < processes; i++ )); do
  cmd=("${exp_cmd[@]}" --coordinator_address="localhost:${port}"
       --num_processes="${processes}" --process_id="${i}"
       ${extra_args[@]+"${extra_args[@]}"})
  if (( dry_run )); then
    printf '%s > %s 2>&1 &\n' "$(show "${cmd[@]}")" \
      "$(quote "${log_dir}/process_${i}.log")"
    continue
  fi
  # $! is the experiment itself; tee/sed only copy its output.
  "${cmd[@]}" > >(tee "${log_dir}/process_${i}.log" \
    | awk -v tag="[p${i}] " '{ print tag $0; fflush() }') 2>&1 &
  pids+=("$!")
done
(( dry_run )) && { echo "wait"; exit 0; }

# Poll rather than wait in order: a peer that dies must not leave the others
# blocked on the coordinator, so the first failure stops the rest.
failed=0
remaining="${processes}"
finished=()
while (( remaining > 0 )); do
  for (( i = 0; i < processes; i++ )); do
    [[ -n "${finished[i]:-}" ]] && continue
    kill -0 "${pids[i]}" 2>/dev/null && continue
    if wait "${pids[i]}"; then rc=0; else rc=$?; fi
    finished[i]=1
    remaining=$(( remaining - 1 ))
    if (( rc != 0 )); then
      echo "process ${i} (pid ${pids[i]}) exited with status ${rc}" >&2
      failed=1
      stop_children
    fi
  done
  (( remaining > 0 )) && sleep 1
done
trap - INT TERM
exit "${failed}"
