#!/usr/bin/env bash
# Creates (or reuses) a Cloud TPU VM, installs recur on every worker, starts one
# experiment on all workers at once and streams worker 0's log.
#
# Every worker runs the same command; on TPU pods jax.distributed.initialize()
# finds the other hosts by itself, so no coordinator flags are passed.
#
# Example:
#   launch/tpu_vm.sh --name=trm-arc --zone=us-central2-b --accelerator=v4-32 \
#     --experiment=arc_trm --variant=paper --workdir=gs://my-bucket/arc_trm \
#     -- --config.seed=1
set -euo pipefail

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
readonly REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

name=""
zone=""
project=""
accelerator="v4-8"
version="tpu-ubuntu2204-base"
spot=0
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

Creates or reuses a Cloud TPU VM, copies recur to every worker, installs it
with 'pip install -e .[tpu]' in a uv-managed venv (Python ${python_version}),
starts 'python -m experiments.EXP' on all workers at once (nohup, one log file
per worker in ~/recur_logs) and follows worker 0's log.

Required:
  --name=NAME             TPU VM name.
  --zone=ZONE             e.g. us-central2-b.
  --experiment=EXP        one of: ${EXPERIMENTS}.
  --workdir=DIR           run directory, e.g. gs://bucket/run (shared by workers).

Options:
  --variant=VARIANT       config variant: --config=experiments/configs/EXP.py:VARIANT.
  --project=PROJECT       GCP project (default: gcloud's configured project).
  --accelerator=TYPE      accelerator type for creation (default: ${accelerator}).
  --version=RUNTIME       TPU software version for creation (default: ${version}).
  --spot                  create a Spot TPU VM.
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
if (( ! stop )); then
  [[ -n "${experiment}" ]] || die "--experiment is required"
  [[ " ${EXPERIMENTS} " == *" ${experiment} "* ]] \
    || die "unknown experiment '${experiment}' (one of: ${EXPERIMENTS})"
  [[ -n "${workdir}" ]] || die "--workdir is required"
fi

gcloud_flags=(--zone="${zone}")
[[ -n "${project}" ]] && gcloud_flags+=(--project="${project}")

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

# 1. Create the VM unless it already exists.
if (( ! skip_create )); then
  create=(gcloud compute tpus tpu-vm create "${name}" "${gcloud_flags[@]}"
          --accelerator-type="${accelerator}" --version="${version}")
  (( spot )) && create+=(--spot)
  if (( dry_run )); then
    echo "# create the TPU VM unless 'describe' finds it:"
    run gcloud compute tpus tpu-vm describe "${name}" "${gcloud_flags[@]}"
    run "${create[@]}"
  elif gcloud compute tpus tpu-vm describe "${name}" "${gcloud_flags[@]}" \
      >/dev/null 2>&1; then
    echo "Reusing TPU VM ${name}."
  else
    run "${create[@]}"
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
