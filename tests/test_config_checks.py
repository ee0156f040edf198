"""config_checks: choices, ranges and finiteness of every setting, one line naming the fix."""

from __future__ import annotations

import math

import pytest

from batl_jax.config import get_base_config
from batl_jax.config_checks import RANGES, _floats, check_values
from batl_jax.errors import ConfigError


def _refused(key: str, value) -> str:
    cfg = get_base_config()
    section, _, field = key.rpartition(".")
    (cfg[section] if section else cfg)[field] = value
    with pytest.raises(ConfigError) as info:
        check_values(cfg)
    message = str(info.value)
    assert "\n" not in message and f"--config.{key}" in message, message
    return message


def test_defaults_pass():
    check_values(get_base_config())


FLOAT_KEYS = sorted(key for key, _ in _floats(get_base_config()))


def test_every_float_setting_is_found_by_the_walk():
    # The walk is generic; this pins that it reaches nested sections and tuples of floats.
    assert {"train.lr", "train.warmup_ratio", "batl.lambda_", "al.stop_kappa"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(key, bad):
    message = _refused(key, bad)
    assert "finite" in message


def test_a_new_float_key_is_covered_without_listing_it():
    cfg = get_base_config()
    cfg.train.some_future_scale = math.nan  # a key config_checks has never heard of
    with pytest.raises(ConfigError, match=r"train\.some_future_scale=nan.*finite"):
        check_values(cfg)


def test_nan_inside_a_tuple_is_refused():
    cfg = get_base_config()
    cfg.train.betas = (0.9, math.nan)
    with pytest.raises(ConfigError, match=r"train\.betas=nan"):
        check_values(cfg)


@pytest.mark.parametrize(
    "key, bad",
    [
        ("seed", 2**63),
        ("seed", -1),
        ("dal.hidden", 0),
        ("dal.batch", 0),
        ("train.sampler", "shuffled"),
        ("batl.triplet_grad", "none"),
        ("batl.lone_anchor", "skip"),
        ("batl.batch_mode", "greedy"),
        ("batl.spacing", -0.1),
        ("dal.lr", 0.0),
        ("bald.num_samples", 0),
        ("bald.max_configs", 0),
        ("analysis.density_k", 0),
        ("analysis.reference_epochs", -7),
        ("analysis.reference_epochs", 0),
        ("alps.fit_steps", 0),
        ("al.test_size", -1),
        ("al.stop_set_size", 0),
        ("al.stop_window", 0),
        ("al.stop_kappa", 0.0),
        ("al.stop_kappa", 1.01),
        ("al.stop", "stable"),
        ("train.lr", 0.0),
        ("train.warmup_ratio", 1.5),
        ("batl.train_triplet_weight", -1.0),
        ("distributed.process_id", -2),
        ("task.p_at_n", (100, 0)),
        ("data.buckets", ()),
        ("data.label_names", ("a", "a")),
        ("data.label_names", ("a", " ")),
    ],
)
def test_out_of_range_values_are_refused(key, bad):
    _refused(key, bad)


@pytest.mark.parametrize(
    "key, good",
    [
        ("seed", 2**63 - 1),
        ("analysis.reference_epochs", -1),
        ("analysis.reference_epochs", 1),
        ("al.stop", "stabilizing"),
        ("al.stop_kappa", 1.0),
        ("al.test_size", 50),
        ("data.label_names", ("billing", "technical")),
    ],
)
def test_edge_values_pass(key, good):
    cfg = get_base_config()
    section, _, field = key.rpartition(".")
    (cfg[section] if section else cfg)[field] = good
    check_values(cfg)


def test_seed_message_states_the_bound():
    assert "< 2**63" in _refused("seed", 2**63)


def test_every_range_key_exists():
    cfg = get_base_config()
    for rule in RANGES:
        section, _, field = rule.key.rpartition(".")
        assert field in (cfg[section] if section else cfg), rule.key


def test_a_section_replaced_by_a_dict_is_refused_in_one_line():
    """What ``--config.model={'a': 1}`` does: the section loses every key but ``a``."""
    cfg = get_base_config()
    cfg.model = {"a": 1}
    with pytest.raises(ConfigError, match=r"^model lacks .*--config\.model\.\w+=VALUE$"):
        check_values(cfg)


def test_a_config_without_a_key_of_the_defaults_is_refused():
    cfg = get_base_config()
    del cfg["seed"]
    with pytest.raises(ConfigError, match=r"no seed: .*get_base_config"):
        check_values(cfg)
    cfg = get_base_config()
    del cfg.al["stop"]
    with pytest.raises(ConfigError, match=r"^al lacks al\.stop .*--config\.al\.\w+=VALUE$"):
        check_values(cfg)


@pytest.mark.parametrize("key", ["data.buckets", "task.p_at_n"])
@pytest.mark.parametrize("bad", [("a",), (16.5,), (True,)])
def test_tuples_of_lengths_hold_positive_ints_only(key, bad):
    _refused(key, bad)


def test_choices_agree_with_the_modules_that_use_them():
    from batl_jax.config_checks import CHOICES
    from batl_jax.data.encoding import SAMPLERS
    from batl_jax.strategies.batl import BATCH_MODES, LONE_ANCHOR_RULES, TRIPLET_GRADS

    assert CHOICES["train.sampler"] == SAMPLERS
    assert CHOICES["batl.triplet_grad"] == TRIPLET_GRADS
    assert CHOICES["batl.lone_anchor"] == LONE_ANCHOR_RULES
    assert CHOICES["batl.batch_mode"] == BATCH_MODES
