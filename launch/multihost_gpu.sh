#!/usr/bin/env bash
# Several GPU hosts (no TPU auto-detection): give each process the coordinator and its id.
#   host 0: COORD=10.0.0.1:1234 NPROC=2 PID=0 bash launch/multihost_gpu.sh configs/agnews.py
#   host 1: COORD=10.0.0.1:1234 NPROC=2 PID=1 bash launch/multihost_gpu.sh configs/agnews.py
# Pass the same --workdir=/shared/folder on every host (NFS or similar, not gs://): process 0
# writes it, every host reads its checkpoints and human labels when resuming. Under SLURM
# or Open MPI, `--config.distributed.enabled=True` alone lets JAX detect all three values.
set -euo pipefail
CONFIG=${1:?usage: launch/multihost_gpu.sh CONFIG [overrides...]}
shift
: "${COORD:?set COORD=host:port of process 0}" "${NPROC:?set NPROC}" "${PID:?set PID}"
cd "$(dirname "$0")/.."
# shellcheck source=launch/setup.sh
source launch/setup.sh
CONFIG=$(absolute_config "$CONFIG")
ensure_venv
ensure_jax_backend gpu cuda12
exec "$VENV_PY" -m batl_jax.main --config="$CONFIG" \
  --config.distributed.enabled=True --config.distributed.coordinator_address="$COORD" \
  --config.distributed.num_processes="$NPROC" --config.distributed.process_id="$PID" "$@"
