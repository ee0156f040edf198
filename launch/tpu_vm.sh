#!/usr/bin/env bash
# Multi-host TPU VM slice (e.g. v4-16). Run the same command on every worker at once:
#   gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all --command \
#     "cd batl_jax && bash launch/tpu_vm.sh configs/pubmed.py --workdir=/mnt/shared/runs/pubmed"
# jax.distributed.initialize() auto-detects the coordinator, process count and id on TPU VMs;
# every host feeds its share of each batch and the mesh spans all chips of the slice.
# --workdir must be one folder shared by all hosts (NFS/Filestore, or a bucket mounted with
# gcsfuse; not a gs:// URL): process 0 writes it, every host reads checkpoints on resume.
set -euo pipefail
CONFIG=${1:?usage: launch/tpu_vm.sh CONFIG [overrides...]}
shift
cd "$(dirname "$0")/.."
# shellcheck source=launch/setup.sh
source launch/setup.sh
CONFIG=$(absolute_config "$CONFIG")
ensure_venv
ensure_jax_backend tpu tpu
exec "$VENV_PY" -m batl_jax.main --config="$CONFIG" --config.distributed.enabled=True "$@"
