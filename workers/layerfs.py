"""The merged filesystem across layers: OCI whiteouts and opaque directories, applied entry by entry."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from workers.unpack import EntryKind, LayerEntry


@dataclass(frozen=True, slots=True)
class FsNode:
    """The final version of one path and the layer it comes from."""

    path: str
    kind: EntryKind
    size: int
    mode: int
    uid: int
    gid: int
    linkname: str | None
    layer: int


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


class MergedFilesystem:
    """Path → node, plus a children index so subtree removals cost the subtree, not the whole image.

    Deletions (whiteouts, opaque markers) only ever remove entries of LOWER layers, so a layer can be
    applied one entry at a time, in whatever order its tar lists them.
    """

    def __init__(self) -> None:
        self._nodes: dict[str, FsNode] = {}
        self._children: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[FsNode]:
        return iter(self._nodes.values())

    def get(self, path: str) -> FsNode | None:
        """The node at ``path`` (root-relative, no leading '/'), if it survives."""
        return self._nodes.get(path)

    def owner_layer(self, path: str) -> int | None:
        """Which layer the final version of ``path`` comes from."""
        node = self._nodes.get(path)
        return node.layer if node else None

    def in_final_fs(self, path: str, layer_index: int) -> bool:
        """Did ``layer_index``'s version of ``path`` survive to the final filesystem?"""
        node = self._nodes.get(path)
        return node is not None and node.layer == layer_index

    def apply(self, layer_index: int, entries: Iterable[LayerEntry]) -> None:
        """Apply one layer's entries on top of the lower layers."""
        for entry in entries:
            self.apply_entry(layer_index, entry)

    def apply_entry(self, layer_index: int, entry: LayerEntry) -> None:
        """Apply a single entry of layer ``layer_index``."""
        if entry.kind is EntryKind.OPAQUE:
            self._remove_children(entry.target or "", below=layer_index)
            return
        if entry.kind is EntryKind.WHITEOUT:
            target = entry.target or ""
            node = self._nodes.get(target)
            if (node is not None and node.layer < layer_index) or (node is None and target in self._children):
                # The second case: a directory lower layers only created implicitly, through its children.
                self._remove(target, below=layer_index)
            return
        existing = self._nodes.get(entry.path)
        if existing is not None and existing.kind is EntryKind.DIR and entry.kind is not EntryKind.DIR:
            self._remove_children(entry.path, below=layer_index + 1)
        self._nodes[entry.path] = FsNode(
            path=entry.path,
            kind=entry.kind,
            size=entry.size,
            mode=entry.mode,
            uid=entry.uid,
            gid=entry.gid,
            linkname=entry.linkname,
            layer=layer_index,
        )
        # Register the path with every ancestor so subtree removal can find it.
        path = entry.path
        while path:
            parent = _parent(path)
            siblings = self._children.setdefault(parent, set())
            if path in siblings:
                break
            siblings.add(path)
            path = parent

    def _remove(self, path: str, *, below: int) -> None:
        """Remove ``path`` and its descendants that come from layers lower than ``below``."""
        self._remove_children(path, below=below)
        node = self._nodes.get(path)
        if node is not None and node.layer < below:
            del self._nodes[path]
        if path not in self._children:
            self._children.get(_parent(path), set()).discard(path)

    def _remove_children(self, directory: str, *, below: int) -> None:
        children = self._children.get(directory)
        if not children:
            return
        for child in list(children):
            self._remove(child, below=below)
        if not children:
            self._children.pop(directory, None)

    def resolve(self, path: str, *, max_hops: int = 40) -> FsNode | None:
        """Follow symlinks and hardlinks inside the image (never the host); None when dangling or looping."""
        current = path.strip("/")
        for _ in range(max_hops):
            node = self._resolve_parents(current, max_hops)
            if node is None:
                return None
            if node.kind is EntryKind.SYMLINK and node.linkname is not None:
                current = self.join_link(node.path, node.linkname)
                continue
            if node.kind is EntryKind.HARDLINK and node.linkname is not None:
                current = node.linkname
                continue
            return node
        return None

    def _resolve_parents(self, path: str, max_hops: int) -> FsNode | None:
        """The node at ``path`` after resolving symlinked directories among its parents."""
        node = self._nodes.get(path)
        if node is None and self._children.get(path):
            # A directory that no tar entry names but whose children exist (hand-made and some tool layers).
            node = FsNode(path=path, kind=EntryKind.DIR, size=0, mode=0o755, uid=0, gid=0, linkname=None, layer=-1)
        if node is not None or "/" not in path:
            return node
        head, _, tail = path.rpartition("/")
        parent = self.resolve(head, max_hops=max_hops - 1)
        if parent is None or parent.path == head:
            return None
        return self._nodes.get(f"{parent.path}/{tail}" if parent.path else tail)

    @staticmethod
    def join_link(link_path: str, target: str) -> str:
        """Resolve a symlink target against the image root; '..' never climbs above it."""
        base = [] if target.startswith("/") else _parent(link_path).split("/")
        parts = [p for p in base if p]
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(part)
        return "/".join(parts)
