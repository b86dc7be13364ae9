"""`python -m inspector analyze PATH... [--json]`: measured evidence per image, no model.

One JSON object per line with `--json`:
`{"path", "width", "height", "degradations": [{"type", "severity", "estimate",
"confidence", "unit"}, ...], "maps": {...}, "elapsed_ms"}`, or `{"path", "error"}`
for an image that cannot be read or measured; the run goes on either way. Folders are
walked; a progress bar goes to stderr. Exit code 0, or 1 when any image failed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator

from inspector.evidence.measure import measure

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})


def analyze_path(path) -> dict:
    """The CLI's JSON line for one file; never raises (failures give {"path", "error"})."""
    shown = str(path)
    try:
        # Imported here: the images module is the loader for the whole package.
        from inspector.images import load_image

        image = load_image(path)
        evidence = measure(image)
    except Exception as error:  # noqa: BLE001 - one bad file must not stop a folder
        return {"path": shown, "error": error_message(error)}
    line = {"path": shown}
    line.update(evidence.to_dict())
    return line


def error_message(error: Exception) -> str:
    text = str(error).strip()
    if type(error).__name__ in ("ImageError",) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def image_paths(paths: Iterable[str]) -> Iterator[Path]:
    """The loader's folder walk when there is one, else a plain walk by extension."""
    try:
        from inspector.images import iter_image_paths
    except ImportError:
        iter_image_paths = None
    if iter_image_paths is not None:
        yield from iter_image_paths(paths)
        return
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(name for name in dirs if not name.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                    yield Path(root) / name


def human_line(result: dict) -> str:
    if "error" in result:
        return f"{result['path']}: ERROR {result['error']}"
    found = [f"{d['type']} {d['severity']} ({d['estimate']:g} {d['unit']})"
             for d in result["degradations"] if d["severity"] != "none"]
    summary = ", ".join(found) if found else "no degradation measured"
    return f"{result['path']} [{result['width']}x{result['height']}]: {summary}"


def analyze_main(paths: list[str], as_json: bool) -> int:
    """Measure every image under `paths`; print a line per image; 1 if any failed."""
    from tqdm import tqdm

    from inspector.memory import keep_freed_memory

    keep_freed_memory()  # this process only measures: keep its large temporaries mapped
    files = list(image_paths(paths))
    failures = 0
    with tqdm(files, desc="analyze", unit="img", file=sys.stderr, disable=None) as progress:
        for path in progress:
            result = analyze_path(path)
            failures += "error" in result
            text = json.dumps(result) if as_json else human_line(result)
            # tqdm.write keeps the bar intact when stdout and stderr share a terminal.
            tqdm.write(text, file=sys.stdout)
    if not files:
        print("no image found under: " + " ".join(map(str, paths)), file=sys.stderr)
        return 1
    return 1 if failures else 0
