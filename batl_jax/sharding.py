"""The device mesh and moving host arrays onto it.

Everything in batl_jax is data parallel over one mesh axis, ``"data"``: model
parameters are replicated (``P()``) and batches are split by rows
(``P("data")``). Arrays whose row count is not a multiple of the device count
are padded, and a boolean mask marks the real rows.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh named ``("data",)`` over the first ``num_devices`` devices (all by default)."""
    devices = jax.devices()
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(f"num_devices={num_devices}, but {len(devices)} device(s) exist")
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device (parameters, small tables)."""
    return NamedSharding(mesh, P())


def row_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading axis across the ``data`` axis (batches, pools)."""
    return NamedSharding(mesh, P(DATA_AXIS))


def num_shards(mesh: Mesh) -> int:
    return mesh.shape[DATA_AXIS]


def padded_size(n: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``n`` (and >= ``multiple``)."""
    return max(multiple, math.ceil(n / multiple) * multiple)


def pad_rows(x: np.ndarray, size: int, value=0) -> np.ndarray:
    """Pad the leading axis of ``x`` to ``size`` rows with ``value``."""
    n = x.shape[0]
    if n == size:
        return x
    if n > size:
        raise ValueError(f"cannot pad {n} rows down to {size}")
    pad = np.full((size - n,) + x.shape[1:], value, dtype=x.dtype)
    return np.concatenate([x, pad], axis=0)


def put_global(x, sharding: NamedSharding) -> jax.Array:
    """Place host array ``x`` (the same on every process) as a global array with ``sharding``.

    Each process fills only its addressable shards, so this works unchanged on one host
    and across hosts after ``jax.distributed.initialize``.
    """
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def put_tree(tree, sharding: NamedSharding):
    """:func:`put_global` on every leaf of ``tree``."""

    def leaf(x):
        if hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            # Typed PRNG keys have no numpy form: move their raw data and re-wrap.
            data = put_global(jax.device_get(jax.random.key_data(x)), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return put_global(jax.device_get(x), sharding)

    return jax.tree.map(leaf, tree)


def put_rows(x: np.ndarray, mesh: Mesh, *, pad_value=0) -> tuple[jax.Array, jax.Array]:
    """Place ``x`` row-sharded on ``mesh``, padded to a multiple of the device count.

    Returns the sharded array and a row-sharded boolean mask (True on real rows).
    """
    x = np.asarray(x)
    n = x.shape[0]
    size = padded_size(n, num_shards(mesh))
    mask = np.zeros(size, dtype=bool)
    mask[:n] = True
    sharding = row_sharded(mesh)
    return put_global(pad_rows(x, size, pad_value), sharding), put_global(mask, sharding)


def put_replicated(x, mesh: Mesh) -> jax.Array:
    """Place a full copy of ``x`` on every device of ``mesh``."""
    return put_global(x, replicated(mesh))


def to_host(x: jax.Array, n: int | None = None) -> np.ndarray:
    """Fetch ``x`` to host numpy (all shards, every process), keeping the first ``n`` rows."""
    if jax.process_count() > 1 and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        x = multihost_utils.process_allgather(x, tiled=True)
    out = np.asarray(jax.device_get(x))
    return out if n is None else out[:n]
