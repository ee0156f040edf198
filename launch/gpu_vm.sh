#!/usr/bin/env bash
# Single GPU VM (one or more GPUs in one host). Usage:
#   bash launch/gpu_vm.sh configs/agnews.py [--config.al.strategy=batl ...]
# Makes sure .venv holds batl_jax, the offline MiniLM and a JAX that sees the GPUs (installing
# jax[cuda12] when it does not, e.g. after `make demo` made a CPU-only .venv), then runs the
# loop over every local GPU (the "data" mesh axis spans them all).
set -euo pipefail
CONFIG=${1:?usage: launch/gpu_vm.sh CONFIG [overrides...]}
shift
cd "$(dirname "$0")/.."
# shellcheck source=launch/setup.sh
source launch/setup.sh
CONFIG=$(absolute_config "$CONFIG")
ensure_venv
ensure_jax_backend gpu cuda12
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
exec "$VENV_PY" -m batl_jax.main --config="$CONFIG" "$@"
