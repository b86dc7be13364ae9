"""The publish itself: one commit of exactly the staged files, then the tag on it (train/push.py).

Runs only after every check of train/push.py has passed; a failure becomes one message
that says what is already published and what to run again.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from train.publish.checks import explain_publish_error

if TYPE_CHECKING:  # annotations only: train/push.py imports this module
    from train.push import PushArgs, Upload

log = logging.getLogger("push")


def existing_tags(api, repo_id: str, repo_type: str, token: str) -> set[str]:
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        refs = api.list_repo_refs(repo_id, repo_type=repo_type, token=token)
    except RepositoryNotFoundError:
        return set()  # a new repo
    return {ref.name for ref in refs.tags}


def publish_adapter(api, args: PushArgs, upload: Upload, token: str, retag: bool) -> str:
    """One commit with exactly the staged files (stale ones deleted), then the tag on it."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    api.create_repo(args.repo, repo_type="model", private=args.private or None, exist_ok=True, token=token)
    names = [name for name, _ in upload.files()]
    remote = api.list_repo_files(args.repo, repo_type="model", token=token)
    stale = sorted(set(remote) - set(names) - {".gitattributes"})
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(upload.folder / name)) for name in names]
    operations += [CommitOperationDelete(path_in_repo=name) for name in stale]
    commit = api.create_commit(args.repo, operations, commit_message=f"Publish {args.tag}", repo_type="model",
                               commit_description="Published with train/push.py of Degradation Inspector.",
                               token=token)
    log.info("committed %d files (%d stale deleted) to %s: %s", len(names), len(stale), args.repo, commit.oid)
    tag_commit(api, args.repo, "model", args.tag, commit.oid, retag, token)
    return commit.oid


def publish_dataset(api, args: PushArgs, dataset, upload: Upload, token: str, retag: bool) -> str:
    """The card first (push_to_hub keeps its text and adds dataset_info and configs), the data, the tag."""
    from huggingface_hub import CommitOperationAdd

    api.create_repo(args.dataset_repo, repo_type="dataset", private=args.private or None, exist_ok=True, token=token)
    api.create_commit(args.dataset_repo, [CommitOperationAdd("README.md", str(upload.folder / "README.md"))],
                      commit_message=f"Card for {args.tag}", repo_type="dataset", token=token)
    commit = dataset.push_to_hub(args.dataset_repo, private=args.private or None, token=token,
                                 commit_message=f"Publish {args.tag}")
    tag_commit(api, args.dataset_repo, "dataset", args.tag, commit.oid, retag, token)
    return commit.oid


def tag_commit(api, repo_id: str, repo_type: str, tag: str, oid: str, retag: bool, token: str) -> None:
    if retag:  # --force: the tag moves to this commit
        api.delete_tag(repo_id, tag=tag, repo_type=repo_type, token=token)
    api.create_tag(repo_id, tag=tag, revision=oid, tag_message=f"Published with train/push.py: {tag}",
                   repo_type=repo_type, token=token)


def publish(args: PushArgs, upload: Upload, dataset, dataset_upload: Upload | None, token: str) -> int:
    from huggingface_hub import HfApi

    api = HfApi()
    targets = [(args.repo, "model")] + ([(args.dataset_repo, "dataset")] if dataset is not None else [])
    done: list[str] = []
    repo_id, repo_type = targets[0]
    try:
        retag = {}
        for repo_id, repo_type in targets:
            retag[repo_id] = args.tag in existing_tags(api, repo_id, repo_type, token)
            if retag[repo_id] and not args.force:
                print(f"error: {repo_type} repo {repo_id} already has the tag {args.tag}: choose another --tag, "
                      "or move it with --force", file=sys.stderr)
                return 2
        if dataset is not None:
            repo_id, repo_type = args.dataset_repo, "dataset"
            publish_dataset(api, args, dataset, dataset_upload, token, retag[repo_id])
            done.append(f"data set {repo_id} at tag {args.tag}")
        repo_id, repo_type = args.repo, "model"
        oid = publish_adapter(api, args, upload, token, retag[repo_id])
    except Exception as error:  # noqa: BLE001 - every Hub failure becomes a message for the user
        log.debug("publish failed", exc_info=True)
        print(f"error: {explain_publish_error(error, repo_id, repo_type)}", file=sys.stderr)
        state = f"already published: {', '.join(done)}; " if done else ""
        print(f"{state}a commit either lands whole or not at all, and the tag {args.tag} is set only after it: "
              "run the same command again (with --force if a tag now exists)", file=sys.stderr)
        return 1
    done.append(f"adapter {args.repo} at tag {args.tag} (commit {oid[:12]})")
    print("Published: " + "; ".join(done))
    print(f"Fetch it: hf download {args.repo} --revision {args.tag}")
    return 0
