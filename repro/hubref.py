"""A hub model reference with its pinned commit, as one string (no torch import here)."""

from __future__ import annotations


def hub_ref(path_or_id: str) -> tuple[str, str | None]:
    """(id or path, revision): a hub model pinned by the profile travels as `org/name@<40-hex commit>`
    (stages.common.model_ref) and is split here, once, for every from_pretrained call."""
    head, sep, rev = str(path_or_id).rpartition("@")
    if sep and len(rev) == 40 and all(c in "0123456789abcdef" for c in rev) and head.count("/") == 1:
        return head, rev
    return str(path_or_id), None


def pinned(path_or_id: str, revision: str | None) -> str:
    return f"{path_or_id}@{revision}" if revision else path_or_id
