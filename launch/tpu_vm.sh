#!/usr/bin/env bash
# Multi-host TPU VM slice (e.g. v4-16). Run the same command on every worker at once:
#   gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all --command \
#     "cd batl_jax && bash launch/tpu_vm.sh configs/pubmed.py --workdir=/mnt/shared/runs/pubmed"
# jax.distributed.initialize() auto-detects the coordinator, process count and id on TPU VMs;
# every host feeds its share of each batch and the mesh spans all chips of the slice.
# --workdir must be one folder shared by all hosts (NFS/Filestore, or a bucket mounted with
# gcsfuse; not a gs:// URL): process 0 writes it, every host reads checkpoints on resume.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:?usage: launch/tpu_vm.sh CONFIG [overrides...]}; shift
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e . "jax[tpu]"
fi
exec .venv/bin/python -m batl_jax.main --config="$CONFIG" --config.distributed.enabled=True "$@"
