"""Which reader loads ``data.name``: a registry the readers add themselves to.

The bundled datasets, ``hub`` and ``files`` are registered by :mod:`batl_jax.data`;
task packages register the datasets they own (relation extraction: semeval, wiki_kbp,
nyt10) when imported, so this package never imports a task. Readers get a
:class:`DataRequest` of plain values; only :func:`load_dataset` reads the config.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path

from batl_jax.data.splits import Dataset, subsample
from batl_jax.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DataRequest:
    """What a reader may need, taken from the ``data`` section of the config.

    ``allow_unlabeled_pool``: people label the pool (``al.oracle=human``), so a bundled
    or hub pool may hold rows without a label. ``label_names`` is empty unless the user
    fixed the label list (``data.label_names``).
    """

    name: str
    on_error: str = "fail"
    data_dir: str = ""
    allow_unlabeled_pool: bool = False
    hub_id: str = ""
    hub_config: str = ""
    train_split: str = "train"
    test_split: str = "test"
    text_field: str = "text"
    label_field: str = "label"
    id_field: str = ""
    train_file: str = ""
    test_file: str = ""
    label_names: tuple[str, ...] = ()


Loader = Callable[[DataRequest], Dataset]
_LOADERS: dict[str, Loader] = {}


def register_loader(name: str, loader: Loader) -> None:
    """Make ``data.name=name`` load with ``loader``; a name is registered once."""
    if name in _LOADERS and _LOADERS[name] is not loader:
        raise ValueError(f"data.name {name!r} already has a loader")
    _LOADERS[name] = loader


def registered_names() -> list[str]:
    return list(_LOADERS)


def resolve_data_dir(data_dir: str) -> Path:
    """The data dir from the config (or ``$BATL_DATA_DIR``), checked to exist."""
    data_dir = data_dir or os.environ.get("BATL_DATA_DIR", "")
    if not data_dir:
        raise DataError(
            "no data dir: set --config.data.dir=DIR or the BATL_DATA_DIR environment variable "
            "to a folder laid out like shared/data"
        )
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataError(
            f"data dir {str(path)!r} does not exist: set --config.data.dir (or BATL_DATA_DIR) "
            "to the folder holding the datasets"
        )
    return path


def _label_names(value) -> tuple[str, ...]:
    """``data.label_names`` checked: each name once, none blank."""
    names = tuple(str(v).strip() for v in value)
    if len(set(names)) != len(names) or not all(names):
        raise ConfigError(
            f"data.label_names={list(names)!r} has a blank or repeated name; list each label once"
        )
    return names


def request_from_config(cfg) -> DataRequest:
    """The values of ``cfg.data`` (and ``al.oracle``) the readers use."""
    d = cfg.data
    return DataRequest(
        name=d.name,
        on_error=d.on_error,
        data_dir=d.dir,
        allow_unlabeled_pool=cfg.al.oracle == "human",
        hub_id=d.hub_id,
        hub_config=d.hub_config,
        train_split=d.train_split,
        test_split=d.test_split,
        text_field=d.text_field,
        label_field=d.label_field,
        id_field=d.id_field,
        train_file=d.train_file,
        test_file=d.test_file,
        label_names=_label_names(d.label_names),
    )


def load_dataset(cfg, seed: int) -> Dataset:
    """Load the train (pool) and test splits named by ``cfg.data`` (a ConfigDict)."""
    name, on_error = cfg.data.name, cfg.data.on_error
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"data.on_error={on_error!r}: use 'fail' or 'skip'")
    if name not in _LOADERS:
        raise ConfigError(f"unknown data.name {name!r}: use one of {', '.join(_LOADERS)}")
    ds = _LOADERS[name](request_from_config(cfg))
    if ds.skipped:
        log.warning("skipped malformed records: %s", ds.skipped)
    train = subsample(ds.train, cfg.data.pool_limit, seed)
    test = subsample(ds.test, cfg.data.test_limit, seed + 1)
    return dataclasses.replace(ds, train=train, test=test)
