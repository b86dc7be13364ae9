"""What may leave the machine: the token for writes, their errors, and the checks of an upload.

Used by train/push.py before anything is uploaded: no optimizer state, pickle, credential,
token or local path may be in a published folder (local paths in text files are scrubbed
to their last component), and the adapter must load with stock peft onto its base.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path, PurePosixPath

from inspector.hub import Unavailable

HOW_TO_LOG_IN = ("log in with `hf auth login` (huggingface_hub stores the token), or set the HF_TOKEN "
                 "environment variable to a token with write access")


def require_token() -> str:
    """The token of HF_TOKEN or of `hf auth login`, for writes. Never print or log it."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise Unavailable(f"no Hugging Face token, so nothing can be published: {HOW_TO_LOG_IN}. "
                          "`--dry-run` shows what would be uploaded without one")
    return token


def explain_publish_error(error: Exception, repo_id: str, repo_type: str = "model") -> str:
    """One sentence on why a write to `repo_id` failed and what to do next."""
    from huggingface_hub import errors

    where = f"the {repo_type} repo {repo_id}"
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, errors.OfflineModeIsEnabled):
        return f"cannot write to {where}: HF_HUB_OFFLINE=1 is set; unset it to publish"
    if status == 401 or isinstance(error, errors.RepositoryNotFoundError):
        return (f"the Hub refused the token for {where} ({status}): the token is invalid or expired, or "
                f"the repo name is wrong: {HOW_TO_LOG_IN}")
    if status == 403:
        return (f"the token cannot write to {where} (403): it is read-only, or has no rights on "
                f"{repo_id.split('/')[0]}: use a token with write access ({HOW_TO_LOG_IN})")
    if status == 409:
        return f"{where} changed while publishing (409 conflict): run the same command again"
    if isinstance(error, errors.HfHubHTTPError):
        detail = error.server_message or str(error).splitlines()[0]
        return f"the Hub refused the write to {where} ({status}): {detail}"
    if isinstance(error, (ConnectionError, TimeoutError, OSError)) or "httpx" in type(error).__module__:
        return f"the Hub cannot be reached to write {where} ({type(error).__name__}): check the network and retry"
    return f"writing {where} failed: {type(error).__name__}: {error}"


# What must never leave the machine. Matched on every component of a path in the upload.
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".joblib")
CHECKPOINT_NAME = re.compile(r"^(checkpoints?|checkpoint-\d+|global_step\d+|optimizer\..*|scheduler\..*"
                             r"|rng_state.*|trainer_state\.json|training_args\.bin)$")
CREDENTIAL_NAME = re.compile(r"^(\.env(\..+)?|token|stored_tokens|\.netrc|\.git-credentials|\.pypirc|\.npmrc"
                             r"|credentials(\.json)?|id_(rsa|dsa|ecdsa|ed25519)(\.pub)?|.+\.(pem|key|p12|pfx))$",
                             re.IGNORECASE)
TOKEN_PATTERN = re.compile(rb"(?<![A-Za-z0-9])(hf_[A-Za-z0-9]{30,}|api_org_[A-Za-z0-9]{30,})")
SECRET_KEY = re.compile(r"(^|[_-])(hub_token|hf_token|access_token|auth_token|api_key|apikey|secret|secret_key"
                        r"|password|passwd)$", re.IGNORECASE)
# Absolute paths under the usual roots of home folders, mounts and scratch space.
LOCAL_ROOTS = ("home", "Users", "root", "tmp", "private", "var", "mnt", "media", "opt", "srv", "data", "scratch",
               "work", "workspace", "content", "kaggle", "gpfs", "lustre", "nfs", "Volumes", "run")
PATH_TAIL = r"(?:/[\w.+@=,-]+)+"
LOCAL_PATH = re.compile(r"(?<![\w.:/~-])(?:~|/(?:" + "|".join(LOCAL_ROOTS) + r"))" + PATH_TAIL
                        + r"|(?<![\w])[A-Za-z]:\\[^\s\"'<>|]+")
TEXT_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".md", ".txt", ".jinja", ".csv", ".tsv", ".toml", ".cfg")


def local_path_pattern(known_paths: tuple[str, ...] = ()) -> re.Pattern:
    """Absolute local paths: under the usual roots, or under any of `known_paths` (input folders)."""
    known = sorted({str(p).rstrip("/") for p in known_paths if len(PurePosixPath(str(p)).parts) > 2},
                   key=len, reverse=True)
    extra = "".join(f"|(?<![\\w.:/~-]){re.escape(path)}(?:/[\\w.+@=,-]+)*" for path in known)
    return re.compile(LOCAL_PATH.pattern + extra)


def path_values(text: str, suffix: str) -> tuple[str, ...]:
    """Absolute paths held as values in a JSON or YAML file (any root, not only the usual ones)."""
    import yaml

    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        return ()
    found, stack = [], [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str) and value.startswith("/") and not any(c.isspace() for c in value) \
                and len(PurePosixPath(value).parts) > 2:
            found.append(value)
    return tuple(found)


def scrub_local_paths(text: str, suffix: str = ".txt", known_paths: tuple[str, ...] = ()) -> tuple[str, list]:
    """Replace absolute local paths by their last component; return the text and the (old, new) pairs."""
    if suffix in (".json", ".yaml", ".yml"):
        known_paths = tuple(known_paths) + path_values(text, suffix)
    changes: dict[str, str] = {}

    def last_component(match: re.Match) -> str:
        path = match.group(0).rstrip("/\\")
        changes[match.group(0)] = re.split(r"[/\\]", path)[-1] or path
        return changes[match.group(0)]

    return local_path_pattern(known_paths).sub(last_component, text), sorted(changes.items())


def secret_values(text: str, suffix: str) -> list[str]:
    """Keys of a JSON/YAML file that hold a secret (hub_token, api_key, password...) with a real value."""
    import yaml

    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        return []
    found, stack = [], [("", data)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((key, v) for v in value)
        elif SECRET_KEY.search(key) and isinstance(value, str) and value and not re.fullmatch(r"<.*>|\*+", value):
            found.append(key)
    return sorted(set(found))


def find_leaks(folder: Path, known_paths: tuple[str, ...] = (), token: str | None = None) -> list[str]:
    """Everything in `folder` (an upload, as it will be sent) that must not leave the machine."""
    problems = []
    local_path = local_path_pattern(known_paths)
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        parts = name.split("/")
        if any(CREDENTIAL_NAME.match(part) for part in parts):
            problems.append(f"{name}: looks like a credential file; it never leaves this machine")
            continue
        if any(CHECKPOINT_NAME.match(part) for part in parts):
            problems.append(f"{name}: a training checkpoint or optimizer/scheduler state; only the adapter is published")
            continue
        if path.suffix.lower() in PICKLE_SUFFIXES:
            problems.append(f"{name}: a pickled file (it runs code when loaded); only safetensors weights are published")
            continue
        data = path.read_bytes()
        if TOKEN_PATTERN.search(data) or (token and token.encode() in data):
            problems.append(f"{name}: contains an access token; remove it (and revoke the token if it was shared)")
            continue
        if path.suffix in (".json", ".yaml", ".yml"):
            keys = secret_values(data.decode("utf-8", "replace"), path.suffix)
            if keys:
                problems.append(f"{name}: holds a secret under {', '.join(keys)}; remove the value")
                continue
        scanned = safetensors_header(data) if path.suffix == ".safetensors" else data
        found = local_path.search(scanned.decode("latin-1"))
        if found:
            problems.append(f"{name}: contains the local path {found.group(0)}"
                            + ("" if path.suffix in TEXT_SUFFIXES else " in binary data, which cannot be cleaned"))
    return problems


def safetensors_header(data: bytes) -> bytes:
    """The JSON header of a safetensors file (names, shapes, metadata): the part that can hold text."""
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
    return data[8:8 + size]


def check_adapter_loads(adapter_folder: Path, base: str) -> list[str]:
    """Load the adapter with stock peft onto its base, as a user would; every tensor must land."""
    import torch
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, AutoProcessor

    problems = []
    try:
        AutoProcessor.from_pretrained(str(adapter_folder))
    except (OSError, ValueError, KeyError) as error:
        problems.append(f"the processor does not load from the upload: {error}")
    try:
        model = AutoModelForImageTextToText.from_pretrained(base, dtype="auto")
    except (OSError, ValueError) as error:
        return problems + [(f"the base model {base} cannot be loaded to check the adapter: {first_lines(error)}; "
                            "pass --base-model FOLDER_OR_ID")]
    try:
        with warnings.catch_warnings():  # peft warns of missing keys; all keys are compared below
            warnings.simplefilter("ignore")
            model = PeftModel.from_pretrained(model, str(adapter_folder), adapter_name="check")
    except Exception as error:  # noqa: BLE001 - peft raises RuntimeError, ValueError, its own errors
        return problems + [f"the adapter does not fit the base model {base}: {first_lines(error)}"]
    # save_embedding_layers=False: "auto" looks the base up on the Hub, a network call in a dry run
    loaded = get_peft_model_state_dict(model, adapter_name="check", save_embedding_layers=False)
    saved = load_file(adapter_folder / "adapter_model.safetensors")
    unused, missing = sorted(set(saved) - set(loaded)), sorted(set(loaded) - set(saved))
    if unused:
        problems.append(f"the adapter does not fit the base model {base}: {len(unused)} of its tensors match no "
                        f"module of the base or of target_modules (e.g. {unused[0]})")
    if missing:
        problems.append(f"the adapter does not fit the base model {base}: {len(missing)} LoRA weights of the "
                        f"model are not in the file (e.g. {missing[0]})")
    if not unused and not missing and not all(torch.equal(saved[k].to(loaded[k].dtype), loaded[k]) for k in saved):
        problems.append(f"the adapter's weights changed when loaded onto {base}")
    return problems


def first_lines(error: Exception, count: int = 2) -> str:
    return " ".join(str(error).strip().splitlines()[:count])
