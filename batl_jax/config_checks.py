"""Value checks of a config that need no data or model: allowed choices and numeric ranges.

Run before anything is read or written, so a typo or an impossible value costs seconds
and leaves the workdir untouched, instead of failing after a round of training. Checks
that need the data (pool size against ``al.batch_size``) live in ``loop.check_config``.
"""

from __future__ import annotations

from batl_jax.errors import ConfigError

# Settings with a fixed set of values.
CHOICES = {
    "train.mode": ("full", "head"),
    "model.pooling": ("cls", "mean"),
    "model.dtype": ("float32", "bfloat16"),
    "al.oracle": ("simulated", "human"),
    "task.name": ("classification", "relation"),
    "data.on_error": ("fail", "skip"),
    "batl.sentence_rep": ("finetuned", "pretrained"),
    "batl.mining": ("minibatch", "global"),
    "coreset.features": ("sentence", "concat"),
    "bald.dropout_scope": ("head", "all"),
}

# Numeric ranges: (key, low, high or None, low excluded).
RANGES = [
    ("seed", 0, None, False),  # SeedSequence takes no negative entropy
    ("al.rounds", 1, None, False),
    ("al.batch_size", 1, None, False),
    ("al.initial_size", -1, None, False),  # -1 = al.batch_size
    ("train.epochs", 0, None, False),
    ("train.min_steps", 0, None, False),
    ("train.batch_size", 1, None, False),
    ("train.eval_batch_size", 1, None, False),
    ("train.lr", 0, None, True),
    ("train.warmup_ratio", 0, 1, False),
    ("train.weight_decay", 0, None, False),
    ("train.dropout", 0, 0.99, False),
    ("model.max_len", 4, None, False),  # [CLS], a token or two, [SEP]
    ("data.pool_limit", 0, None, False),
    ("data.test_limit", 0, None, False),
    ("batl.lambda_", 0, None, False),
    ("batl.margin", 0, None, False),
    ("batl.mining_batch", 2, None, False),
    ("batl.embed_dim", 1, None, False),
    ("bald.mc_samples", 1, None, False),
    ("dal.sub_rounds", 1, None, False),
    ("dal.steps", 1, None, False),
    ("alps.mask_prob", 0, 1, True),
    ("checkpoint.keep", 1, None, False),
    ("mesh.num_devices", 0, None, False),  # 0 = all devices
]


def _get(cfg, key: str):
    section, _, field = key.rpartition(".")
    return cfg[section][field] if section else cfg[field]


def check_values(cfg) -> None:
    """Raise a one-line :class:`ConfigError` (value, then the fix) for the first bad value."""
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise ConfigError(
                f"{key}={value!r} is not allowed: set --config.{key} to one of "
                + ", ".join(repr(a) for a in allowed)
            )
    for key, low, high, low_open in RANGES:
        value = _get(cfg, key)
        if (value <= low if low_open else value < low) or (high is not None and value > high):
            span = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high else "")
            raise ConfigError(f"{key}={value!r} is out of range: set --config.{key} {span}")
    if any(int(b) < 1 for b in cfg.data.buckets):
        raise ConfigError(
            f"data.buckets={tuple(cfg.data.buckets)}: every length must be >= 1; "
            "set --config.data.buckets"
        )
