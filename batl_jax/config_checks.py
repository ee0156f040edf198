"""Value checks of a config that need no data or model: allowed choices and numeric ranges.

Run before anything is read or written, so a typo or an impossible value costs seconds
and leaves the workdir untouched, instead of failing after a round of training. Checks
that need the data (pool size against ``al.batch_size``) live in ``loop.check_config``.

Every float anywhere in the config must be finite: NaN compares false with every bound,
so a range check alone would let ``--config.train.lr=nan`` through.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import ml_collections

from batl_jax.config import get_base_config
from batl_jax.errors import ConfigError

# Settings with a fixed set of values.
CHOICES = {
    "train.mode": ("full", "head"),
    "model.pooling": ("cls", "mean"),
    "model.dtype": ("float32", "bfloat16"),
    "al.oracle": ("simulated", "human"),
    "al.stop": ("none", "stabilizing"),
    "task.name": ("classification", "relation"),
    "data.on_error": ("fail", "skip"),
    "batl.sentence_rep": ("finetuned", "pretrained"),
    "batl.mining": ("minibatch", "global"),
    "coreset.features": ("sentence", "concat"),
    "bald.dropout_scope": ("head",),
    # Also checked where they are used; here too, so a typo costs seconds, not a round.
    "train.sampler": ("bucketed", "random"),
    "batl.triplet_grad": ("all", "embedding_only"),
    "batl.lone_anchor": ("mean", "paper"),
    "batl.batch_mode": ("topk", "spaced"),
}


class Range(NamedTuple):
    """``low <= value`` (``low < value`` when ``low_open``) and ``value <= high``."""

    key: str
    low: float
    high: float | None = None
    low_open: bool = False
    high_text: str = ""  # how the message states ``high`` when a literal would not read well

    def holds(self, value) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and (self.high is None or value <= self.high)

    def span(self) -> str:
        text = f"{'>' if self.low_open else '>='} {self.low}"
        if self.high is not None:
            text += f" and {self.high_text or f'<= {self.high}'}"
        return text


RANGES = [
    # SeedSequence takes no negative entropy; the checkpoint stores the seed as an int64.
    Range("seed", 0, 2**63 - 1, high_text="< 2**63"),
    Range("al.rounds", 1),
    Range("al.batch_size", 1),
    Range("al.initial_size", -1),  # -1 = al.batch_size
    Range("al.test_size", 0),  # 0 = no evaluation set drawn from the pool
    Range("al.stop_set_size", 1),
    Range("al.stop_window", 1),
    Range("al.stop_kappa", 0, 1, low_open=True),
    Range("train.epochs", 0),
    Range("train.min_steps", 0),
    Range("train.batch_size", 1),
    Range("train.eval_batch_size", 1),
    Range("train.lr", 0, low_open=True),
    Range("train.warmup_ratio", 0, 1),
    Range("train.weight_decay", 0),
    Range("train.dropout", 0, 0.99),
    Range("model.max_len", 4),  # [CLS], a token or two, [SEP]
    Range("data.pool_limit", 0),
    Range("data.test_limit", 0),
    Range("batl.lambda_", 0),
    Range("batl.margin", 0),
    Range("batl.mining_batch", 2),
    Range("batl.embed_dim", 1),
    Range("batl.train_triplet_weight", 0),
    Range("batl.spacing", 0),
    Range("dal.sub_rounds", 1),
    Range("dal.hidden", 1),
    Range("dal.steps", 1),
    Range("dal.batch", 1),
    Range("dal.lr", 0, low_open=True),
    Range("bald.mc_samples", 1),
    Range("bald.max_configs", 1),
    Range("bald.num_samples", 1),  # 0 samples gives a negative mutual information
    Range("alps.mask_prob", 0, 1, low_open=True),
    Range("alps.n_init", 1),
    Range("alps.max_iter", 1),
    Range("alps.tol", 0.0),
    Range("alps.fit_steps", 1),
    Range("analysis.density_k", 1),
    Range("checkpoint.keep", 1),
    Range("mesh.num_devices", 0),  # 0 = all devices
    Range("distributed.num_processes", 0),  # 0 = auto-detect
    Range("distributed.process_id", -1),  # -1 = auto-detect
]


def _get(cfg, key: str):
    section, _, field = key.rpartition(".")
    return cfg[section][field] if section else cfg[field]


def _floats(node, prefix: str = ""):
    """Every ``(key, value)`` float of ``node``, recursively (sections, tuples and lists)."""
    if isinstance(node, float):
        yield prefix, node
    elif isinstance(node, (tuple, list)):
        for value in node:
            yield from _floats(value, prefix)
    elif hasattr(node, "items"):  # a ConfigDict section (or a plain dict inside one)
        for name, value in node.items():
            yield from _floats(value, f"{prefix}.{name}" if prefix else str(name))


def check_finite(cfg) -> None:
    """Refuse NaN and ±inf in every float setting, present and future, by walking the dict."""
    spans = {r.key: r.span() for r in RANGES}
    for key, value in _floats(cfg):
        if not math.isfinite(value):
            want = f"a finite number {spans[key]}" if key in spans else "a finite number"
            raise ConfigError(f"{key}={value!r} is not a number: set --config.{key} to {want}")


def check_structure(cfg, base=None, prefix: str = "") -> None:
    """Every section and key of the defaults present, and sections still sections.

    ``--config.model={'name': 'x'}`` replaces the whole section by one holding that key
    only; without this check the run would fail later on the first key it dropped.
    """
    base = get_base_config() if base is None else base
    for name, default in base.items():
        key = f"{prefix}{name}"
        if name not in cfg:
            raise ConfigError(
                f"the config has no {key}: build config files on "
                "batl_jax.config.get_base_config(), which sets every key"
            )
        if not isinstance(default, ml_collections.ConfigDict):
            continue
        value = cfg[name]
        is_section = isinstance(value, ml_collections.ConfigDict)
        lost = sorted(set(default) - set(value)) if is_section else []
        if not is_section or lost:
            what = ", ".join(f"{key}.{k}" for k in lost[:3]) + " ..." * (len(lost) > 3)
            raise ConfigError(
                f"{key} {'lacks ' + what if lost else 'is not a section'} (replaced as a whole?)"
                f": set its fields one at a time, e.g. --config.{key}.{next(iter(default))}=VALUE"
            )
        check_structure(value, default, f"{key}.")


def check_values(cfg) -> None:
    """Raise a one-line :class:`ConfigError` (value, then the fix) for the first bad value."""
    check_structure(cfg)
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise ConfigError(
                f"{key}={value!r} is not allowed: set --config.{key} to one of "
                + ", ".join(repr(a) for a in allowed)
            )
    check_finite(cfg)
    for rule in RANGES:
        value = _get(cfg, rule.key)
        if not rule.holds(value):
            raise ConfigError(
                f"{rule.key}={value!r} is out of range: set --config.{rule.key} {rule.span()}"
            )
    _check_sequences(cfg)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_sequences(cfg) -> None:
    """Tuple-valued settings and the one setting with a sentinel below its range."""
    epochs = cfg.analysis.reference_epochs
    if epochs != -1 and epochs < 1:
        raise ConfigError(
            f"analysis.reference_epochs={epochs!r} is out of range: set "
            "--config.analysis.reference_epochs to -1 (= train.epochs) or >= 1"
        )
    if not cfg.data.buckets or not all(_positive_int(b) for b in cfg.data.buckets):
        raise ConfigError(
            f"data.buckets={tuple(cfg.data.buckets)}: every length must be >= 1; "
            "set --config.data.buckets"
        )
    if not all(_positive_int(n) for n in cfg.task.p_at_n):
        raise ConfigError(
            f"task.p_at_n={tuple(cfg.task.p_at_n)}: every N must be >= 1; "
            "set --config.task.p_at_n, e.g. '(100, 200, 500)'"
        )
    names = tuple(cfg.data.label_names)
    if any(not isinstance(n, str) or not n.strip() for n in names) or len(set(names)) < len(names):
        raise ConfigError(
            f"data.label_names={names!r}: the names must be distinct non-empty strings; "
            "set --config.data.label_names, e.g. \"('billing', 'technical')\", or () for the "
            "labels found in the file"
        )
