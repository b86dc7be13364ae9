"""Put a local folder into a Hugging Face cache, in the layout `huggingface_hub` writes.

Nothing can be downloaded where the tests run, so the cache a user would have after
`hf download ORG/NAME --revision TAG` is made here: `blobs/` named by content hash,
`snapshots/<commit>/` of relative symlinks, and `refs/<revision>` holding the commit.
Loading from it with HF_HUB_OFFLINE=1 then takes the real cache code paths.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def populate_cache(cache_dir: Path, repo_id: str, folder: Path, revisions: tuple[str, ...] = ("main",),
                   repo_type: str = "model") -> Path:
    """Cache every file of `folder` as repo `repo_id` at `revisions`; return the snapshot folder."""
    files = sorted(path for path in Path(folder).rglob("*") if path.is_file())
    commit = hashlib.sha1("".join(str(p.relative_to(folder)) + sha256(p) for p in files).encode()).hexdigest()
    repo = Path(cache_dir) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for path in files:
        digest = sha256(path)
        blob = repo / "blobs" / digest
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(path.read_bytes())
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for revision in revisions:
        (repo / "refs" / revision).write_text(commit)
    return snapshot


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
