"""Forward passes of a model over the train or test split, in length buckets.

Outputs are host numpy arrays indexed by dataset row. In ``train.mode = head`` the
pre-trained encoder's sentence features are computed once per run and cached; the
round's head then maps them to ``h_C``, logits and ``e`` in milliseconds.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from batl_jax import data, sharding, train
from batl_jax.strategies.base import softmax

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$BATL_CACHE_DIR`` or ``~/.cache/batl_jax``: frozen-encoder features shared by runs."""
    return Path(os.environ.get("BATL_CACHE_DIR") or Path.home() / ".cache" / "batl_jax")


class FeaturePasses:
    """Runs the model over the train or test split in length buckets.

    Args:
      encoded: ``{"train": Encoded, "test": Encoded}``.
      buckets: padded lengths.
      batch_size: global batch size for scoring (a multiple of the device count).
    """

    def __init__(
        self,
        encoded: dict[str, data.Encoded],
        buckets,
        batch_size: int,
        *,
        cache_dir: Path | None = None,
        model_key: str = "",
    ):
        self.encoded = encoded
        self.buckets = buckets
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.model_key = model_key
        self._sentence_cache: dict[str, np.ndarray] = {}

    def cache_path(self, split: str, key: str, kind: str) -> Path | None:
        """Where a frozen-model feature of ``split`` is cached: keyed by ``key`` (the model's
        identity and settings) and the exact token ids, so any change of data or model misses."""
        if self.cache_dir is None or not key:
            return None
        enc = self.encoded[split]
        h = hashlib.sha256(key.encode())
        h.update(enc.input_ids.tobytes())
        h.update(enc.lengths.tobytes())
        return self.cache_dir / kind / f"{h.hexdigest()[:32]}.npy"

    @staticmethod
    def save_cached(path: Path, array: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, array, allow_pickle=False)
        os.replace(tmp, path)  # atomic: concurrent runs never read a partial file

    def run(
        self, steps, params, rest, split, keys, *, stochastic=False, sentence=None,
        desc="score", rows=None,
    ):  # fmt: skip
        """``keys`` outputs of the model over ``rows`` of ``split`` (default: all), by row."""
        enc = self.encoded[split]
        rows = np.arange(len(enc)) if rows is None else np.asarray(rows)
        if sentence is not None:
            # Cached features: lengths no longer matter, so one bucket (one compiled shape).
            batches = data.scoring_batches(enc, rows, self.batch_size, (self.buckets[-1],))
            n_batches = -(-len(rows) // self.batch_size)
        else:
            # A bucket's last batch takes a smaller compiled size (a multiple of the
            # device count) instead of empty rows: the cost of short pools.
            shards = sharding.num_shards(steps.mesh)
            batches = data.scoring_batches(
                enc, rows, self.batch_size, self.buckets, tail_multiple=shards
            )
            n_batches = data.num_scoring_batches(enc, rows, self.batch_size, self.buckets)
        return train.predict(
            steps,
            params,
            rest,
            batches,
            n_batches,
            len(enc),
            keys,
            stochastic=stochastic,
            sentence_cache=sentence,
            desc=desc,
        )

    def pretrained_sentence(self, split: str, steps, params, rest) -> np.ndarray:
        """s(x) of the pre-trained encoder for ``split`` (computed once, then cached).

        ``params``/``rest`` must be an untrained model's (pre-trained encoder weights).
        """
        if split not in self._sentence_cache:
            # On disk too (keyed by model identity + token ids): a sweep of many runs over
            # one dataset encodes it once, not once per run.
            path = self.cache_path(split, self.model_key, "sentence")
            if path is not None and path.is_file():
                self._sentence_cache[split] = np.load(path, allow_pickle=False)
                log.info("%s features loaded from %s", split, path)
            else:
                out = self.run(
                    steps, params, rest, split, ("sentence",), desc=f"encode {split} (once)"
                )
                self._sentence_cache[split] = out["sentence"]
                if path is not None:
                    self.save_cached(path, out["sentence"])
        return self._sentence_cache[split]

    def test_probs(self, steps, params, rest, sentence=None, split="test", rows=None):
        """``(n, C)`` class probabilities over ``rows`` of ``split`` (default: the test split)."""
        out = self.run(
            steps, params, rest, split, ("logits",), sentence=sentence, desc="evaluate", rows=rows
        )
        return softmax(out["logits"])
