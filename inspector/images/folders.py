"""Command-line paths to image files: folders walked, in a stable order."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .formats import IMAGE_EXTENSIONS


def iter_image_paths(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Expand command-line paths into image files, in a stable order.

    - a file is yielded as given, whatever its extension: the user named it, and
      `load_image` will say what is wrong with it if anything is;
    - a folder is walked recursively (symlinked folders are not followed, so links
      cannot loop), keeping files with an image extension (`IMAGE_EXTENSIONS`, any
      case), skipping hidden files and folders (names starting with "."; this also
      drops macOS "._photo.jpg" resource forks), sorted by path;
    - a path that does not exist is yielded anyway, so that `load_image` reports
      "no such file" for it in the same stream as every other error;
    - a file reached twice (given twice, or given and inside a given folder) is
      yielded once. Unreadable subfolders are skipped silently.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]  # a lone path would otherwise be iterated letter by letter
    seen: set[str] = set()
    for given in paths:
        path = Path(given)
        for found in _walk_images(path) if path.is_dir() else [path]:
            key = os.path.abspath(found)
            if key not in seen:
                seen.add(key)
                yield found


def _walk_images(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(root) / name)
    return sorted(found)
