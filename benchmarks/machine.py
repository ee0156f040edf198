"""What machine a figure was measured on: CPU model and matrix units, device, cores, versions.

A ratio between batl_jax and PyTorch depends on the CPU as much as on the code: oneDNN
runs bfloat16 matmuls on AMX tiles where XLA:CPU may not, so the same command gives
different ratios on CPUs with and without AMX or AVX-512 (``docs/benchmarks.md``).
Every suite therefore records the facts gathered here in its JSON and prints them in
its header.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import time
from pathlib import Path

# The matrix-instruction features that decide how fast a CPU runs dense float32 and
# bfloat16 matmuls, as /proc/cpuinfo spells its flags.
MATRIX_FLAGS = ("avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "amx_int8")

# Libraries whose versions every JSON records (distribution names).
VERSIONED = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "torch",
    "transformers",
    "small-text",
    "scikit-activeml",
    "scikit-learn",
    "baal",
)

# Peers: import name -> distribution name (for the install hint).
PEERS = {
    "torch": "torch",
    "transformers": "transformers",
    "small_text": "small-text",
    "skactiveml": "scikit-activeml",
    "sklearn": "scikit-learn",
    "baal": "baal",
}
INSTALL_HINT = (
    "pip install torch==2.13.0 (CPU wheel first), then pip install -e '.[bench]' "
    "(small-text 1.4.1, scikit-activeml 1.0.1, baal 2.1.0)"
)


def setup_environment() -> None:
    """Offline hub, quiet tokenizers; call before importing transformers or jax."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")


def version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cores() -> dict:
    """The machine's core count and how many of them this process may use."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity call
        usable = os.cpu_count()
    return {"cpu_count": os.cpu_count(), "usable": usable}


def cpu_facts(cpuinfo: str | None = None) -> dict:
    """The CPU model and which of :data:`MATRIX_FLAGS` it has.

    ``cpuinfo`` is the text of ``/proc/cpuinfo`` (read when None). ``matrix_features`` is
    the present flags joined by ", ", ``"none"`` when the CPU lists flags but none of
    these, and ``"unknown"`` where no flag list can be read (not Linux): absence of
    evidence is not reported as absence of the units.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = None, None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if model is None and key in ("model name", "Model", "cpu model"):
            model = value.strip()
        elif flags is None and key in ("flags", "Features"):
            flags = set(value.split())
    if flags is None:
        features = "unknown"
    else:
        features = ", ".join(f for f in MATRIX_FLAGS if f in flags) or "none"
    return {"model": model or platform.processor() or "unknown", "matrix_features": features}


def has_gpu() -> bool:
    """Whether ``jax.devices()`` shows a GPU (starts the JAX runtime)."""
    import jax

    return any(d.platform == "gpu" for d in jax.devices())


def device_name() -> str:
    """The first JAX device and the device count, e.g. ``cpu cpu x1``."""
    import jax

    dev = jax.devices()[0]
    return f"{dev.platform} {dev.device_kind} x{jax.device_count()}"


def load_average() -> float | None:
    """The 1-minute load average (other processes compete for the cores)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def env_info(device: str | None = None) -> dict:
    """Device, CPU, versions and cores, recorded in every JSON and printed in every header.

    ``device`` names the device when the caller knows it without starting JAX in this
    process (a parent whose children do the measuring); by default JAX is asked.
    """
    info = {
        "device": device or device_name(),
        "cpu": cpu_facts(),
        "cores": cores(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "versions": {d: version(d) for d in VERSIONED},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # The load at the start is recorded: it moves the ratios (docs/benchmarks.md).
        "loadavg_1m": load_average(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["torch_cuda"] = bool(torch.cuda.is_available())
    except ImportError:
        pass
    return info


def peer(module: str) -> object | None:
    """Import a peer library, or print a clear note and return None (never raise)."""
    try:
        return importlib.import_module(module)
    except Exception as e:  # ImportError, or a broken install
        dist = PEERS.get(module, module)
        print(
            f"NOTE: peer {dist} is not available ({type(e).__name__}: {e}); its rows are "
            f"skipped. Install the bench extra: {INSTALL_HINT}"
        )
        return None


def torch_device(torch, notes: list[str], what: str) -> str | None:
    """Where the PyTorch side runs: ``"cuda"`` when torch has it, else ``"cpu"``; None
    (and a note in ``notes``) when JAX runs on a GPU and torch has no CUDA, because a GPU
    against a CPU is no comparison."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and has_gpu():
        notes.append(f"torch has no CUDA here: {what} skipped on a GPU (not like for like)")
        return None
    return device
