"""Label Studio round trips without files: ``push`` a pending batch, ``pull`` its labels.

``push`` finds the project (by id, or by title: created on first push from our labelling
config) and imports the batch's unlabeled samples as tasks, each with the model's top
hint as a prediction; samples already in the project are not sent twice. ``pull`` reads
every annotated task of the pending batch back and imports the labels through the same
all-or-nothing checks as a file (unannotated tasks are still to label). The workdir
remembers the server and project (``queries/labelstudio.json``), so ``pull`` needs no flags
beyond the API key. Uses ``label-studio-sdk`` (``pip install 'batl_jax[labelstudio]'``).
"""

from __future__ import annotations

import contextlib
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from batl_jax import oracle
from batl_jax.errors import ConfigError, StateError
from batl_jax.label import batch, formats
from batl_jax.run_files import atomic_write_text

LINK = "labelstudio.json"  # in WORKDIR/queries: the server and project pushed to
TITLE = "batl_jax {name}"  # a new project's default title


class ServerError(StateError):
    """Label Studio refused a request or could not be reached."""


def _link_path(workdir: Path) -> Path:
    return Path(workdir) / oracle.QUERIES / LINK


def read_link(workdir: Path) -> dict:
    path = _link_path(workdir)
    if not path.is_file():
        return {}
    try:
        link = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StateError(f"{path} is damaged; delete it and pass --url and --project") from e
    return link if isinstance(link, dict) else {}


def client(url: str | None, api_key: str | None):
    """A ``label_studio_sdk.LabelStudio`` client; the key from --api-key or the environment."""
    try:
        from label_studio_sdk import LabelStudio
    except ImportError as e:
        raise ConfigError(
            "push/pull need label-studio-sdk; install it with pip install 'batl_jax[labelstudio]'"
        ) from e
    if not url:
        raise ConfigError("no Label Studio server given; pass --url (e.g. http://localhost:8080)")
    key = api_key or os.environ.get("LABEL_STUDIO_API_KEY")
    if not key:
        raise ConfigError(
            "no Label Studio API key; pass --api-key or set LABEL_STUDIO_API_KEY (Label Studio: "
            "Account & Settings > Access Token)"
        )
    with _server(url):
        return LabelStudio(base_url=url.rstrip("/"), api_key=key)


@contextlib.contextmanager
def _server(url: str | None):
    """Turn the SDK's and httpx's exceptions into one line naming the server."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        yield
    except ApiError as e:
        hint = {401: "check the API key", 403: "check the API key's rights", 404: "check --project"}
        body = e.body.get("detail", e.body) if isinstance(e.body, dict) else e.body
        body = " ".join(str(body)[:200].split())
        raise ServerError(
            f"Label Studio at {url} answered {e.status_code} ({body}); "
            f"{hint.get(e.status_code or 0, 'check the server log')}"
        ) from e
    except httpx.HTTPError as e:
        raise ServerError(
            f"cannot reach Label Studio at {url} ({type(e).__name__}: {e}); check --url and "
            "that the server is running"
        ) from e


def _choices(label_config: str) -> list[str] | None:
    """The choice values of the ``label`` control of a project's config (None: no such)."""
    try:
        root = ET.fromstring(label_config or "")
    except ET.ParseError:
        return None
    for node in root.iter("Choices"):
        if node.get("name") == formats.CONTROL:
            return [c.get("value", "") for c in node.iter("Choice")]
    return None


def _project(ls, project: str | None, link: dict, names: list[str], relation: bool, name: str):
    """(project id, title, created?) for ``project`` (an id or a title)."""
    project = project or link.get("project")
    if project is not None and str(project).isdigit():
        p = ls.projects.get(id=int(project))
    else:
        title = str(project) if project else TITLE.format(name=name)
        found = [p for p in ls.projects.list(title=title) if p.title == title]
        if not found:
            config = formats.labelstudio_config(names, relation)
            p = ls.projects.create(title=title, label_config=config)
            return p.id, p.title, True
        p = ls.projects.get(id=found[0].id)
    got = _choices(p.label_config)
    if got != list(names):
        raise ConfigError(
            f"Label Studio project {p.id} ({p.title!r}) does not label with this run's labels "
            f"(its '{formats.CONTROL}' choices: {got}); pass another --project (a new title "
            "creates one)"
        )
    return p.id, p.title, False


def _tasks(ls, project_id: int) -> list[dict]:
    return [
        t.model_dump(warnings=False) if hasattr(t, "model_dump") else dict(t)
        for t in ls.tasks.list(project=project_id, fields="all")
    ]


def push(workdir: Path, url: str | None, api_key: str | None, project: str | None) -> str:
    """Send the pending batch's unlabeled samples to a Label Studio project."""
    workdir = Path(workdir)
    link = read_link(workdir)
    url = url or link.get("url")
    with oracle.locked(workdir):
        pending, rows = batch.unlabeled(workdir)
        r, names = pending["round"], pending["label_names"]
        ls = client(url, api_key)
        with _server(url):
            relation = any("entities" in b for b in rows)
            name = json.loads((workdir / "config.json").read_text()).get("name", "run")
            pid, title, created = _project(ls, project, link, names, relation, name)
            there = {(t.get("data") or {}).get("batl_id") for t in _tasks(ls, pid)}
            new = [b for b in rows if b["id"] not in there]
            if new:
                ls.projects.import_tasks(id=pid, request=formats.labelstudio_tasks(new, r))
        text = json.dumps({"url": url, "project": pid, "title": title}, indent=2) + "\n"
        atomic_write_text(_link_path(workdir), text)
    made = "created project" if created else "project"
    return (
        f"pushed {len(new)} task(s) of {batch.what(r)} to {made} {pid} ({title!r}) at {url}; "
        f"{len(rows) - len(new)} already there; label them in Label Studio, then run "
        f"python -m batl_jax.label pull --workdir={workdir}"
    )


def pull(
    workdir: Path,
    url: str | None,
    api_key: str | None,
    project: str | None,
    allow_blank: bool = False,
) -> str:
    """Import the labels of the pending batch's annotated tasks (all or nothing)."""
    workdir = Path(workdir)
    link = read_link(workdir)
    url = url or link.get("url")
    project = project or link.get("project")
    if project is None:
        raise ConfigError(
            f"no Label Studio project for {workdir}; run push first, or pass --project"
        )
    ls = client(url, api_key)
    waiting = {"annotated": 0, "open": 0}

    def read() -> list[formats.Entry]:
        pending, rows, _ = batch.context(workdir)
        ids = {b["id"] for b in rows}
        with _server(url):
            pid, _, _ = _project(ls, str(project), {}, pending["label_names"], False, "")
            tasks = _tasks(ls, pid)
        entries = []
        for k, t in enumerate(tasks, start=1):
            where = f"Label Studio project {pid} task {t.get('id', k)}"
            entry = formats.labelstudio_entry(where, t)
            if entry.problem is None and str(entry.id) not in ids:
                continue  # a task of another round's batch
            if entry.problem is None and entry.label is None:
                waiting["open"] += 1
                continue
            waiting["annotated"] += 1
            entries.append(entry)
        if not entries and not allow_blank:
            raise StateError(
                f"no task of {batch.what(pending['round'])} is annotated yet in Label Studio "
                f"project {pid} at {url}; label some, then pull again"
            )
        return entries

    summary = batch.import_entries(workdir, read, allow_blank, rest="label them in Label Studio")
    return f"{summary}; {waiting['open']} task(s) not yet annotated in Label Studio"
