"""The Hub boundary at run time: where the base and the adapters come from.

An adapter is a local folder or a Hub repo id at a revision, fetched through the
`huggingface_hub` cache (its offline mode, its errors). Everything goes through
`huggingface_hub`; this module only turns its failures into messages that say what to
do next. What publishing needs (the token, write errors, leak checks) is
`train/publish/checks.py`, which the Space does not ship.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Only what loading an adapter needs: no checkpoints, no optimizer states.
ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors", "inspector_task.json"]


class Unavailable(RuntimeError):
    """A model or adapter that cannot be had; the message says why and how to fix it."""


def is_local(spec: str | Path) -> bool:
    return Path(spec).expanduser().is_dir()


def explain_hub_error(error: Exception, repo_id: str, revision: str | None, what: str) -> str:
    """One sentence on why `repo_id` could not be fetched and what to do next."""
    from huggingface_hub import errors

    at = f" at revision {revision!r}" if revision else ""
    if isinstance(error, errors.HFValidationError):
        return f"{repo_id!r} is neither a local folder nor a valid Hub repo id (ORG/NAME)"
    if isinstance(error, errors.GatedRepoError):
        return (f"the {what} {repo_id}{at} is gated or private and this machine has no access: "
                "log in with `hf auth login` or set HF_TOKEN with a token that can read it")
    if isinstance(error, errors.RevisionNotFoundError):
        return f"the {what} {repo_id} has no revision {revision!r}: check the tag or commit"
    if isinstance(error, errors.RepositoryNotFoundError):
        return (f"the {what} {repo_id} does not exist on the Hub, or is private: check the name, "
                "or set HF_TOKEN with a token that can read it")
    if isinstance(error, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)):
        return (f"the {what} {repo_id}{at} is not in the local Hugging Face cache and the Hub cannot be "
                "reached (offline, or HF_HUB_OFFLINE=1): download it once with network "
                f"(`hf download {repo_id}`), or point to a local folder")
    if isinstance(error, (ConnectionError, TimeoutError)) or "httpx" in type(error).__module__:
        return (f"the Hub cannot be reached to fetch the {what} {repo_id}{at} ({type(error).__name__}): "
                "check the network, or point to a local folder")
    return f"the {what} {repo_id}{at} could not be fetched: {type(error).__name__}: {error}"


def resolve_adapter(spec: str | Path, revision: str | None = None) -> Path:
    """A local folder holding a PEFT adapter, fetched through the Hub cache if needed."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "adapter_config.json").is_file():
            raise Unavailable(f"{path} has no adapter_config.json: point INSPECTOR_ADAPTER to a PEFT adapter folder")
        return path
    if str(spec).startswith((".", "/", "~")):
        raise Unavailable(f"adapter folder {spec} does not exist")
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id=str(spec), revision=revision, allow_patterns=ADAPTER_FILES)
    except Exception as error:  # noqa: BLE001 - every Hub failure becomes a message for the user
        raise Unavailable(explain_hub_error(error, str(spec), revision, "adapter")) from error
    if not (Path(folder) / "adapter_config.json").is_file():
        raise Unavailable(f"the Hub repo {spec} has no adapter_config.json: it is not a PEFT adapter")
    return Path(folder)


def fetch_snapshot(repo_id: str, revision: str | None, allow_patterns: list[str], what: str) -> Path:
    """The cached snapshot folder of `repo_id` with the files matching `allow_patterns`."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=allow_patterns))
    except Exception as error:  # noqa: BLE001 - every Hub failure becomes a message for the user
        raise Unavailable(explain_hub_error(error, repo_id, revision, what)) from error
