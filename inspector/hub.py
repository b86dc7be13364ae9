"""The Hub boundary at run time: where the base and the adapters come from.

An adapter is a local folder or a Hub repo id at a revision, fetched through the
`huggingface_hub` cache (its offline mode, its errors). Everything goes through
`huggingface_hub`; this module only turns its failures into messages that say what to
do next. What publishing needs (the token, write errors, leak checks) is
`train/publish/checks.py`, which the Space does not ship.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

# Only what loading an adapter needs, and its card (the training figures the app shows): no
# checkpoints, no optimizer states.
ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors", "inspector_task.json", "README.md"]
# How long the one reachability check before loading may take. Without it, huggingface_hub retries
# each of the base model's files five times with back-off when there is no network: 150 s of
# "Name or service not known" before the app could serve its page.
HUB_CHECK_TIMEOUT_S = 3.0


class Unavailable(RuntimeError):
    """A model or adapter that cannot be had; the message says why and how to fix it."""


def is_local(spec: str | Path) -> bool:
    return Path(spec).expanduser().is_dir()


def hub_is_offline() -> bool:
    """True when huggingface_hub answers from its cache only (HF_HUB_OFFLINE, or `use_cache_only`)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = HUB_CHECK_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hub's endpoint opens within `timeout` seconds.

    Name resolution is inside the timeout too: it runs in a daemon thread, as
    `socket.create_connection` bounds only the connect, and a resolver without a route
    can hang for longer than the whole start should take.
    """
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    outcome: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((url.hostname, port), timeout=timeout):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    thread = threading.Thread(target=connect, daemon=True, name="hub-check")
    thread.start()
    thread.join(timeout)
    return bool(outcome and outcome[0])


def use_cache_only() -> None:
    """From now on huggingface_hub (and transformers and peft through it) reads its cache only,
    as with HF_HUB_OFFLINE=1: its constant is read at each request, the variable by child processes."""
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"


def prepare_hub(specs: list[str | None], timeout: float = HUB_CHECK_TIMEOUT_S) -> str | None:
    """Check once that the Hub answers before anything is fetched from it; if not, switch to the
    cache only. Returns the one notice to show (None when nothing changed).

    Nothing is checked when every spec is a local folder or the Hub is already off.
    """
    remote = [str(spec) for spec in specs if spec and not is_local(spec) and not str(spec).startswith((".", "/", "~"))]
    if not remote or hub_is_offline():
        return None
    if hub_reachable(timeout):
        return None
    use_cache_only()
    notice = (f"The Hub cannot be reached (no answer within {timeout:g} s), so {', '.join(remote)} come from the "
              "local Hugging Face cache only (as with HF_HUB_OFFLINE=1); set HF_HUB_OFFLINE=1 to skip this check")
    log.warning(notice)
    return notice


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
