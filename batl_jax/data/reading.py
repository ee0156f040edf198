"""Reading data files with the ``datasets`` library's builders (json, csv, parquet), offline.

Every failure becomes one :class:`~batl_jax.errors.DataError` line naming the file, the
problem and the fix; a JSON-lines file that does not load is read again line by line to
name the first bad line.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

from batl_jax.errors import DataError

# File suffix (before an optional .gz) -> datasets builder and its options.
_FORMATS = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".tab": ("csv", {"sep": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".ndjson": ("json", {}),
    ".parquet": ("parquet", {}),
    ".pq": ("parquet", {}),
}
FORMAT_HINT = ".csv, .tsv, .json, .jsonl or .parquet (gzipped text files too: .csv.gz, ...)"


def _csv_header(path: Path, sep: str) -> list[str]:
    """The column names of a CSV/TSV file that holds no rows."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        return next(csv.reader(f, delimiter=sep), [])


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def read_json_records(path: Path, missing_hint: str) -> list[dict]:
    """Read a (gzipped) JSON-lines file; ``missing_hint`` names the setting to check when
    the file does not exist."""
    import datasets

    if not path.is_file():
        raise DataError(f"missing data file {str(path)!r}: {missing_hint}")
    try:
        # to_list() inside: pyarrow defers some checks (UTF-8) until values are read.
        return datasets.load_dataset("json", data_files=str(path), split="train").to_list()
    except Exception as e:  # datasets raises many types for unreadable files
        diagnose_jsonl(path)  # raises a DataError naming the bad line, if it finds one
        raise DataError(
            f"cannot read {str(path)!r} ({type(e).__name__}: {_first_line(e)}); "
            "expected JSON lines (gzip allowed)"
        ) from e


def diagnose_jsonl(path: Path) -> None:
    """Find why a JSON-lines file does not load: the first line that is not UTF-8 or not
    JSON, or no record at all. Only runs after ``datasets`` failed, so the good path
    reads every file once."""
    opener = gzip.open if path.suffix == ".gz" else open
    records = 0
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"{path}: line {number} is not valid UTF-8 (byte 0x{raw[e.start]:02x} at "
                        f"column {e.start + 1}); re-save the file as UTF-8"
                    ) from e
                if not line.strip():
                    continue
                try:
                    json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(
                        f"{path}: line {number} is not valid JSON ({e.msg} at column "
                        f"{e.colno}); fix or remove that line"
                    ) from e
                records += 1
    except (OSError, EOFError) as e:  # e.g. a truncated or mislabeled .gz
        raise DataError(
            f"cannot read {path} ({type(e).__name__}: {e}); re-create the file "
            "(JSON lines, gzip allowed)"
        ) from e
    if records == 0:
        raise DataError(f"{path} has no records (empty file); put JSON lines in it")


def file_format(path: Path, setting: str) -> tuple[str, str]:
    """The datasets builder for ``path`` and its format suffix (``.csv``, ...)."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    suffix = suffixes[-2] if gz and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if suffix not in _FORMATS:
        raise DataError(
            f"{setting}={str(path)!r}: cannot tell the format from the name; "
            f"use a file ending in {FORMAT_HINT}"
        )
    builder = _FORMATS[suffix][0]
    if gz and builder == "parquet":
        raise DataError(
            f"{setting}={str(path)!r}: a gzipped Parquet file cannot be read; "
            "un-gzip it (Parquet compresses its columns itself)"
        )
    return builder, suffix


def read_table(path: Path, setting: str) -> tuple[list[dict], list[str]]:
    """The rows of a user's file and its column names; ``setting`` names the config key
    that gave the path (for messages).

    CSV/TSV cells are read as text, as written: ids such as ``007`` keep their zeros and
    cells such as ``NA`` or ``None`` stay text (only empty cells are blank).
    """
    import datasets

    builder, suffix = file_format(path, setting)
    if not path.is_file():
        raise DataError(f"missing data file {str(path)!r}: check --config.{setting}")
    options: dict[str, object] = dict(_FORMATS[suffix][1])
    if builder == "csv":
        options["keep_default_na"] = False

    def load(**extra):
        return datasets.load_dataset(
            builder, data_files=str(path), split="train", keep_in_memory=True, **options, **extra
        )

    try:
        table = load()
        if builder == "csv" and any(
            getattr(f, "dtype", "") not in ("string", "large_string")
            for f in table.features.values()
        ):
            # Numbers were inferred: read again with every column as text.
            text = datasets.Value("string")
            table = load(features=datasets.Features({c: text for c in table.column_names}))
        # to_list() inside: pyarrow defers some checks (UTF-8) until values are read.
        return table.to_list(), list(table.column_names)
    except Exception as e:  # datasets raises many types for unreadable files
        if builder == "csv" and "corresponds to no data" in str(e):
            return [], _csv_header(path, str(options.get("sep", ",")))  # a header, no rows
        if suffix in (".jsonl", ".ndjson"):
            diagnose_jsonl(path)  # raises a DataError naming the bad line, if it finds one
        kind = {"csv": "CSV/TSV", "json": "JSON or JSON-lines", "parquet": "Parquet"}[builder]
        raise DataError(
            f"cannot read {setting}={str(path)!r} ({type(e).__name__}: {_first_line(e)}); "
            f"check that it is a valid {kind} file (UTF-8 text)"
        ) from e
