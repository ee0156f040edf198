#!/usr/bin/env bash
# Single GPU VM (one or more GPUs in one host). Usage:
#   bash launch/gpu_vm.sh configs/agnews.py [--config.al.strategy=batl ...]
# Installs JAX with CUDA 12 wheels into .venv on first use, then runs the loop over every
# local GPU (the "data" mesh axis spans them all).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:?usage: launch/gpu_vm.sh CONFIG [overrides...]}; shift
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e . "jax[cuda12]"
fi
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
exec .venv/bin/python -m batl_jax.main --config="$CONFIG" "$@"
