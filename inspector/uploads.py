"""Many photos at once: uploads (image files and zips of them) to named sources, results to
table rows, and the CSV and JSON downloads.

A zip is read member by member in memory, never extracted to disk, so a member named
"../../x" cannot write anywhere; its members are bounded in number and size before any
is decompressed (a zip bomb is refused from its directory, not after inflating it).
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from inspector.headline import describe_estimate
from inspector.images import IMAGE_EXTENSIONS, ImageLimits
from inspector.taxonomy import DEGRADATION_TYPES, TYPE_LABELS

MAX_PHOTOS = 64  # per batch: each costs a model call (seconds on a CPU)
MAX_ZIP_BYTES = 512 * 1024 * 1024  # uncompressed total of the image members of one zip


class BatchError(ValueError):
    """An upload that cannot be taken as a batch; the message says what to do."""


def zip_members(path: Path) -> list[tuple[str, bytes]]:
    """The image members of a zip, as (name inside the zip, bytes), in name order."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise BatchError(f"{path.name} is not a readable zip file ({error}): zip the photos again") from error
    with archive:
        members = sorted((info for info in archive.infolist() if not info.is_dir()
                          and os.path.splitext(info.filename)[1].lower() in IMAGE_EXTENSIONS
                          and not Path(info.filename).name.startswith(".")), key=lambda info: info.filename)
        if len(members) > MAX_PHOTOS:
            raise BatchError(f"{path.name} holds {len(members)} photos; at most {MAX_PHOTOS} per batch")
        too_big = [info.filename for info in members if info.file_size > ImageLimits.max_bytes]
        if too_big or sum(info.file_size for info in members) > MAX_ZIP_BYTES:
            raise BatchError(f"{path.name} is too large once unpacked ({', '.join(too_big[:3]) or 'in total'}): "
                             f"at most {ImageLimits.max_bytes // 2**20} MB a photo, {MAX_ZIP_BYTES // 2**20} MB in all")
        return [(f"{path.name}/{info.filename}", archive.read(info)) for info in members]


def expand_uploads(paths: Iterable[str | os.PathLike]) -> list[tuple[str, Any]]:
    """(display name, source for `load_image`) per photo: files as they are, zips by member."""
    sources: list[tuple[str, Any]] = []
    for given in paths:
        path = Path(given)
        if path.suffix.lower() == ".zip":
            sources.extend(zip_members(path))
        else:
            sources.append((path.name, path))
        if len(sources) > MAX_PHOTOS:
            raise BatchError(f"{len(sources)} photos or more were given; at most {MAX_PHOTOS} per batch")
    if not sources:
        raise BatchError("no photos in the upload: add image files, or a zip of them")
    return sources


TABLE_COLUMNS = ["photo", "headline", *(f"measured {kind}" for kind in DEGRADATION_TYPES),
                 *(f"adapter {kind}" for kind in DEGRADATION_TYPES), "disagreements", "error"]


def table_row(record: Mapping[str, Any]) -> list[str]:
    """One photo's row of the results table (and of the CSV), from its result record."""
    if "error" in record:
        return [record["photo"], "", *([""] * 2 * len(DEGRADATION_TYPES)), "", record["error"]]
    measured = {item["type"]: item for item in record["evidence"]["degradations"]}
    headline = record["headline"]
    said = headline["adapter"] or {}
    return [record["photo"], headline["text"],
            *(f"{measured[kind]['severity']} ({describe_estimate(kind, float(measured[kind]['estimate']))})"
              for kind in DEGRADATION_TYPES),
            *(said.get(kind, "-") for kind in DEGRADATION_TYPES),
            ", ".join(headline["disagreements"]), ""]


PAGE_COLUMNS = ["photo", "headline", *(TYPE_LABELS[kind] for kind in DEGRADATION_TYPES)]


def page_row(record: Mapping[str, Any]) -> list[str]:
    """The page's narrower row: per type "measured severity (estimate); adapter: severity"."""
    if "error" in record:
        return [record["photo"], f"error: {record['error']}", *([""] * len(DEGRADATION_TYPES))]
    full = table_row(record)
    said = record["headline"]["adapter"] or {}
    cells = [f"{measured}; adapter: {said.get(kind, '-')}"
             for kind, measured in zip(DEGRADATION_TYPES, full[2:2 + len(DEGRADATION_TYPES)])]
    return [record["photo"], record["headline"]["text"], *cells]


def write_downloads(records: list[Mapping[str, Any]], folder: Path) -> list[str]:
    """results.csv (the table) and results.json (every record in full) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = folder / "results.csv", folder / "results.json"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TABLE_COLUMNS)
        writer.writerows(table_row(record) for record in records)
    json_path.write_text(json.dumps(list(records), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return [str(csv_path), str(json_path)]
