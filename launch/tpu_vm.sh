#!/usr/bin/env bash
# Requests (or reuses) a Cloud TPU slice as a queued resource, installs recur on
# every worker, starts one experiment on all workers at once and streams worker
# 0's log. The full walkthrough (create, run, preempt, resume on another slice
# size, delete) is in docs/training.md.
#
# Every worker runs the same command; on TPU pods jax.distributed.initialize()
# finds the other hosts by itself, so no coordinator flags are passed.
#
# Example:
#   launch/tpu_vm.sh --name=trm-arc --zone=us-central2-b --accelerator=v4-32 \
#     --experiment=arc_trm --variant=paper --workdir=gs://my-bucket/arc_trm \
#     --spot -- --config.seed=1
set -euo pipefail

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
readonly REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

name=""
zone=""
project=""
accelerator="v4-8"
version=""                    # default: the runtime for the accelerator generation
spot=0
direct_create=0
wait_minutes=60
delete=0
experiment=""
variant=""
workdir=""
repo_url=""
branch="main"
python_version="3.11"
remote_dir="recur"            # relative to the remote home directory
remote_venv="recur_venv"
skip_create=0
skip_install=0
no_tail=0
stop=0
dry_run=0
extra_args=()

usage() {
  cat <<EOF
Usage: $(basename "$0") --name=NAME --zone=ZONE --experiment=EXP --workdir=DIR [options] [-- EXPERIMENT_ARGS...]

Requests a Cloud TPU slice as a queued resource (or reuses the TPU VM NAME),
waits until it is ACTIVE, copies recur to every worker, installs it with
'pip install -e .[tpu]' in a uv-managed venv (Python ${python_version}), starts
'python -m experiments.EXP' on all workers at once (nohup, one log file per
worker in ~/recur_logs) and follows worker 0's log. The run saves a checkpoint
and exits 0 on SIGTERM (Spot preemption, maintenance, --stop); the same
command resumes it, also on a slice of another size.

Required:
  --name=NAME             TPU VM name.
  --zone=ZONE             e.g. us-central2-b.
  --experiment=EXP        one of: ${EXPERIMENTS}.
  --workdir=DIR           run directory, e.g. gs://bucket/run (shared by workers).

Options:
  --variant=VARIANT       config variant: --config=experiments/configs/EXP.py:VARIANT.
  --project=PROJECT       GCP project (default: gcloud's configured project).
  --accelerator=TYPE      accelerator type for creation (default: ${accelerator}),
                          e.g. v4-32, v5litepod-16 (v5e), v5p-8, v6e-8.
  --version=RUNTIME       TPU software version (default, per generation:
                          v6e: v2-alpha-tpuv6e, v5p: v2-alpha-tpuv5,
                          v5e: v2-alpha-tpuv5-lite, v2-v4: tpu-ubuntu2204-base).
  --spot                  request Spot capacity (cheaper, can be preempted).
  --direct_create         'tpu-vm create' instead of a queued resource.
  --wait_minutes=N        how long to wait for the queued resource to become
                          ACTIVE (default: ${wait_minutes}).
  --delete                delete the queued resource and its TPU VM, then exit.
  --repo_url=URL          git clone URL on the workers instead of copying the
                          local working tree with scp.
  --branch=BRANCH         branch for --repo_url (default: ${branch}).
  --python_version=X.Y    Python for the remote venv (default: ${python_version}).
  --skip_create           do not describe/create the VM.
  --skip_install          do not copy or install the code (restart only).
  --no_tail               start the run and return without following the log.
  --stop                  stop the run started by this script on all workers.
  --dry-run               print every command instead of running it.
  -h, --help              this message.

Everything after '--' is forwarded to the experiment (e.g. --config.seed=1).
EOF
}

while (( $# )); do
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --accelerator=*) accelerator="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --spot) spot=1 ;;
    --direct_create) direct_create=1 ;;
    --wait_minutes=*) wait_minutes="${1#*=}" ;;
    --delete) delete=1 ;;
    --experiment=*) experiment="${1#*=}" ;;
    --variant=*) variant="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --repo_url=*) repo_url="${1#*=}" ;;
    --branch=*) branch="${1#*=}" ;;
    --python_version=*) python_version="${1#*=}" ;;
    --skip_create) skip_create=1 ;;
    --skip_install) skip_install=1 ;;
    --no_tail) no_tail=1 ;;
    --stop) stop=1 ;;
    --dry-run|--dry_run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra_args=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

[[ -n "${name}" ]] || die "--name is required"
[[ -n "${zone}" ]] || die "--zone is required"
if (( ! stop && ! delete )); then
  [[ -n "${experiment}" ]] || die "--experiment is required"
  [[ " ${EXPERIMENTS} " == *" ${experiment} "* ]] \
    || die "unknown experiment '${experiment}' (one of: ${EXPERIMENTS})"
  [[ -n "${workdir}" ]] || die "--workdir is required"
fi

gcloud_flags=(--zone="${zone}")
[[ -n "${project}" ]] && gcloud_flags+=(--project="${project}")

# The TPU software version Google documents for JAX, per TPU generation.
runtime_for() {
  case "$1" in
    v6e-*) echo "v2-alpha-tpuv6e" ;;
    v5p-*) echo "v2-alpha-tpuv5" ;;
    v5litepod-*|v5e-*) echo "v2-alpha-tpuv5-lite" ;;
    v2-*|v3-*|v4-*) echo "tpu-ubuntu2204-base" ;;
    *) return 1 ;;
  esac
}
if [[ -z "${version}" ]]; then
  version="$(runtime_for "${accelerator}")" \
    || die "no default runtime for accelerator '${accelerator}': pass --version=RUNTIME"
fi
[[ "${wait_minutes}" =~ ^[0-9]+$ ]] || die "--wait_minutes must be a whole number"

if (( delete )); then
  # --force also deletes the TPU VM the queued resource holds.
  run gcloud compute tpus queued-resources delete "${name}" "${gcloud_flags[@]}" \
    --force --quiet
  exit 0
fi

# Runs a shell command line on every worker (or on --worker=0 with $2).
on_workers() {
  run gcloud compute tpus tpu-vm ssh "${name}" --worker="${2:-all}" \
    "${gcloud_flags[@]}" --command="$1"
}

if (( stop )); then
  # The run's PID was saved by the start step below; only that process group
  # is signalled.
  on_workers 'if [ -f ~/recur_logs/run.pid ]; then kill -- -"$(cat ~/recur_logs/run.pid)" || true; fi'
  exit 0
fi

# Waits until the queued resource NAME is ACTIVE (its TPU VM exists).
wait_active() {
  local state deadline=$(( SECONDS + 60 * wait_minutes ))
  while true; do
    state="$(gcloud compute tpus queued-resources describe "${name}" \
      "${gcloud_flags[@]}" --format='value(state.state)')"
    echo "queued resource ${name}: ${state}"
    case "${state}" in
      ACTIVE) return 0 ;;
      FAILED|SUSPENDED|SUSPENDING) die "queued resource ${name} is ${state}" ;;
    esac
    (( SECONDS < deadline )) || die "queued resource ${name} not ACTIVE after ${wait_minutes} min"
    sleep 30
  done
}

# 1. Request the slice unless its TPU VM already exists.
if (( ! skip_create )); then
  if (( direct_create )); then
    create=(gcloud compute tpus tpu-vm create "${name}" "${gcloud_flags[@]}"
            --accelerator-type="${accelerator}" --version="${version}")
  else
    # A queued resource named like its one TPU VM (node), so every later
    # command addresses the VM by --name.
    create=(gcloud compute tpus queued-resources create "${name}" --node-id="${name}"
            "${gcloud_flags[@]}" --accelerator-type="${accelerator}"
            --runtime-version="${version}")
  fi
  (( spot )) && create+=(--spot)
  if (( dry_run )); then
    echo "# request the slice unless 'describe' finds its TPU VM:"
    run gcloud compute tpus tpu-vm describe "${name}" "${gcloud_flags[@]}"
    run "${create[@]}"
    if (( ! direct_create )); then
      echo "# then poll every 30 s (up to ${wait_minutes} min) until the state is ACTIVE:"
      run gcloud compute tpus queued-resources describe "${name}" "${gcloud_flags[@]}" \
        --format='value(state.state)'
    fi
  elif gcloud compute tpus tpu-vm describe "${name}" "${gcloud_flags[@]}" \
      >/dev/null 2>&1; then
    echo "Reusing TPU VM ${name}."
  else
    run "${create[@]}"
    (( direct_create )) || wait_active
  fi
fi

# 2. Put the same code on every worker and install it.
if (( ! skip_install )); then
  if [[ -n "${repo_url}" ]]; then
    on_workers "rm -rf ~/${remote_dir} && git clone --depth=1 --branch=$(printf '%q' "${branch}") $(printf '%q' "${repo_url}") ~/${remote_dir}"
  else
    # The working tree, uncommitted edits included, minus caches and venvs.
    tarball="${TMPDIR:-/tmp}/recur-${name}.tar.gz"
    run tar -C "${REPO_ROOT}" --exclude=.git --exclude='.venv*' \
      --exclude=__pycache__ --exclude='*.egg-info' -czf "${tarball}" .
    run gcloud compute tpus tpu-vm scp "${tarball}" "${name}:~/recur.tar.gz" \
      --worker=all "${gcloud_flags[@]}"
    on_workers "rm -rf ~/${remote_dir} && mkdir -p ~/${remote_dir} && tar -xzf ~/recur.tar.gz -C ~/${remote_dir}"
  fi
  # uv brings its own Python >= 3.11 (TPU runtime images ship an older one).
  on_workers "set -e; command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh; export PATH=\$HOME/.local/bin:\$PATH; cd ~/${remote_dir}; [ -x ~/${remote_venv}/bin/python ] || uv venv --python=${python_version} ~/${remote_venv}; uv pip install --python=\$HOME/${remote_venv}/bin/python -e '.[tpu]'"
fi

# 3. Start the same command on all workers at once.
config="experiments/configs/${experiment}.py"
[[ -n "${variant}" ]] && config+=":${variant}"
exp_cmd=("~/${remote_venv}/bin/python" -m "experiments.${experiment}"
         "--config=${config}" "--workdir=${workdir}" ${extra_args[@]+"${extra_args[@]}"})
# Quote for the remote shell; the venv path keeps its ~ so it expands there.
exp_line="${exp_cmd[0]}$(printf ' %q' "${exp_cmd[@]:1}")"
stamp="$(date +%Y%m%d-%H%M%S)"
log="~/recur_logs/${experiment}-${stamp}-\$(hostname).log"
on_workers "mkdir -p ~/recur_logs && cd ~/${remote_dir} && setsid nohup ${exp_line} > ${log} 2>&1 < /dev/null & echo \$! > ~/recur_logs/run.pid; ln -sfn ${log} ~/recur_logs/latest.log; echo started on \$(hostname)"

# 4. Follow worker 0's log (Ctrl-C stops following, not the run).
if (( ! no_tail )); then
  on_workers "tail -n +1 -F ~/recur_logs/latest.log" 0
fi
