"""datapackage.json: the Frictionless Data Package describing the research
dataset's files (https://specs.frictionlessdata.io/data-package/).

Keys the server's /data/export/ page reads (keep them): package-level
`created` and `temporal` {start, end}; per resource `name`, `path`, `format`,
`mediatype`, `bytes`, `hash` ("sha256:<hex>"), `rows`, `description`.
Our own keys carry the `co2db:` prefix.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the column lists load pyarrow: imported where used, not for a run with nothing new
    from .export_build import Built
    from .export_write import Written

PACKAGE_FILE = "datapackage.json"
MEDIATYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
_NAME_BAD = re.compile(r"[^a-z0-9._-]+")


def software_version() -> str:
    """The checkout's version (pyproject.toml), with the git commit when there is one:
    '0.1.0+g1a2b3c4d5e6f'."""
    root = Path(__file__).resolve().parent.parent.parent
    try:
        with open(root / "pyproject.toml", "rb") as f:
            version = tomllib.load(f)["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        version = "unknown"
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        commit = ""
    return f"{version}+g{commit}" if commit else version


def file_hash(path: Path) -> tuple[int, str]:
    """(size, "sha256:<hex>") of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, "sha256:" + digest.hexdigest()


def table_schema(columns) -> dict:
    """A Table Schema: each column's type, unit and description; empty is null."""
    fields = []
    for name, kind, unit, description in columns:
        field = {"name": name, "type": kind, "description": description}
        if unit:
            field["unit"] = unit
        fields.append(field)
    return {"fields": fields, "missingValues": [""]}


def resource_name(path: str, used: set[str]) -> str:
    """A unique Frictionless resource name (lower case, digits, . _ -) for a path."""
    base = _NAME_BAD.sub("-", path.lower()).strip("-") or "file"
    name, n = base, 1
    while name in used:
        n += 1
        name = f"{base}-{n}"
    used.add(name)
    return name


def resource(written: Written, folder: Path, used: set[str], stats: dict[str, tuple[int, str]]) -> dict:
    from .export_rows import COLUMNS
    from .export_write import DAILY_COLUMNS, PARQUET_COLUMNS

    size, digest = stats.get(written.path) or file_hash(folder / written.path)
    res = {
        "name": resource_name(written.path, used),
        "path": written.path,
        "format": written.format,
        "mediatype": MEDIATYPES[written.format],
        "bytes": size,
        "hash": digest,
        "rows": written.rows,
        "description": written.description,
    }
    if written.format == "csv":
        res["profile"] = "tabular-data-resource"
        res["encoding"] = "utf-8"
        res["dialect"] = {"delimiter": ",", "quoteChar": '"', "lineTerminator": "\n", "header": True}
        res["schema"] = table_schema(COLUMNS if written.table == "readings" else DAILY_COLUMNS)
        if written.quoting is not None:  # where each month starts: ranged downloads, and appends
            res["co2db:quoting"] = written.quoting
            res["co2db:months"] = [list(m) for m in written.months]
    else:
        # Frictionless reads Parquet through pandas, which turns an integer
        # column with nulls into floats and then fails its own type check; so
        # these are plain data resources, their schema (the same fields; the
        # readings' `site` is in the folder name) beside the standard keys.
        res["profile"] = "data-resource"
        res["co2db:schema"] = table_schema(PARQUET_COLUMNS if written.table == "readings" else DAILY_COLUMNS)
    return res


def build_package(
    folder: Path, built: Built, stats: dict[str, tuple[int, str]], created: str, version: str, state: dict
) -> dict:
    """The package for the files written into folder (stats: known sizes and
    hashes); state: what export.py keeps to know what is new next time."""
    from .export_rows import FLAG_LIST
    from .export_write import NULL_PARTITION

    used: set[str] = set()
    return {
        "profile": "data-package",
        "name": "co2unit-readings",
        "title": "CO2 units: readings with deployment and quality flags",
        "description": (
            "Every imported reading of the CO2 units, once, with the deployment period it falls in and its "
            "quality flags (DATA-FORMATS.md, 'The research dataset (export)'). The same rows as CSV files "
            f"(csv/, per site, per unit outside any period, bad_time) and as a Parquet dataset (parquet/, "
            f"hive-style site=/year= folders; {NULL_PARTITION} means none); daily summaries in daily/."
        ),
        "created": created,
        "temporal": {"start": built.span[0], "end": built.span[1]},
        "version": version,
        "co2db:software": {"name": "co2db", "version": version},
        "co2db:flags": [{"name": name, "meaning": meaning} for name, meaning in FLAG_LIST],
        "co2db:units": built.units,
        "co2db:sites": built.sites,
        **state,
        "resources": [resource(w, folder, used, stats) for w in built.files],
    }


def read_package(folder: Path) -> dict | None:
    """The package of an existing export, None when there is none or it is unreadable."""
    try:
        with open(folder / PACKAGE_FILE, encoding="utf-8") as f:
            package = json.load(f)
    except (OSError, ValueError):
        return None
    return package if isinstance(package, dict) and isinstance(package.get("resources"), list) else None


def write_package(folder: Path, package: dict) -> None:
    with open(folder / PACKAGE_FILE, "w", encoding="utf-8") as f:
        json.dump(package, f, indent=1, ensure_ascii=False)
        f.write("\n")
