"""No code from untrusted files runs: the package never unpickles, never trusts remote
code, and loads numpy arrays without pickle. Checked on the syntax tree of every module,
so comments and docstrings that mention these names do not count."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "batl_jax"
# The one sanctioned pickle read: ``python -m batl_jax.model.convert DIR``, run by the user,
# through torch's restricted unpickler (weights_only=True).
CONVERT = PACKAGE / "model" / "convert.py"
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _name(node: ast.AST) -> str:
    """``a.b.c`` for a call's function (best effort)."""
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return "?"


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return "<missing>"


def test_the_package_has_modules_to_check():
    assert len(list(_modules())) > 20


def test_no_pickle_modules_are_imported():
    bad = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            bad += [f"{path.name}:{node.lineno} imports {n}" for n in names if n in PICKLE_MODULES]
    assert not bad, bad


def test_no_unsafe_loaders():
    bad = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            fn, where = _name(node.func), f"{path.relative_to(PACKAGE)}:{node.lineno}"
            if fn.endswith("torch.load"):
                if path != CONVERT or _keyword(node, "weights_only") is not True:
                    bad.append(f"{where}: torch.load outside convert.py or without weights_only")
            elif fn in ("np.load", "numpy.load") and _keyword(node, "allow_pickle") is not False:
                bad.append(f"{where}: np.load without allow_pickle=False")
            elif (
                fn.endswith("from_pretrained") and _keyword(node, "trust_remote_code") is not False
            ):
                bad.append(f"{where}: from_pretrained without trust_remote_code=False")
            elif fn.endswith("Model.from_pretrained") or "ModelFor" in fn:
                # Weights through transformers: safetensors only (its .bin path unpickles).
                if _keyword(node, "use_safetensors") is not True:
                    bad.append(f"{where}: model from_pretrained without use_safetensors=True")
            elif "trust_remote_code" in [kw.arg for kw in node.keywords] and (
                _keyword(node, "trust_remote_code") is not False
            ):
                bad.append(f"{where}: trust_remote_code not False")
            elif fn.endswith(("read_pickle", "yaml.load", "yaml.unsafe_load")) or fn in (
                "eval",
                "exec",
            ):
                bad.append(f"{where}: {fn}")
    assert not bad, bad


def test_convert_is_the_only_torch_load_and_is_restricted():
    calls = [
        node
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _name(node.func).endswith("torch.load")
    ]
    assert calls and all(_keyword(c, "weights_only") is True for c in calls)
