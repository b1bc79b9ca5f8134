"""The registry moves of a quarantine: preserve a verified copy, take the tags out of service, restore them.

Behaviour per case (distribution 2.8 cannot delete a tag alone and a DELETE by digest drops every tag of it):

1. **Preserve.** Every manifest of the image (an index and each of its platform manifests, attestation
   manifests included) and every blob they name (configs, layers) is copied into ``<quarantine repo><repository>``:
   blobs by cross-repository mount, or by a streamed chunked upload (memory bounded by ``COPY_CHUNK``) when
   the registry answers 202; manifests by a PUT of the exact bytes, by digest and under ``held-<alg>-<hex>``
   (listable, kept by ``garbage-collect --delete-untagged``). A layer with ``urls`` that the registry does not
   hold (a foreign layer) cannot be copied and is recorded as skipped.
2. **Verify.** Every blob is in the copy with the same digest and size (HEAD), every manifest with the same
   bytes (GET, digest recomputed) and under its tag. Nothing is touched before this passes.
3. **Take out of service.** The tags that point at the digest *now* (tag list + HEAD, not the record) are
   re-pointed, one by one with a HEAD right before the PUT, to a placeholder image whose config labels and one
   file say that the image is quarantined, why, its original digest and where to read more. A tag that the
   record knows but that now points at another digest (re-pushed during the scan) is not touched and is
   recorded in ``skipped_tags``. Tags that appear on the digest meanwhile are picked up (three rounds).
4. **Delete the digest when it is safe**, so it cannot be pulled by digest either: no tag points at it any
   more and no tagged index of the repository that is not being quarantined lists it. Otherwise, or when the
   registry refuses deletes (405), the digest stays (``mode: repointed`` with the reason); a pull by digest
   then still works, which is recorded. Platform manifests of a quarantined index are deleted under the same
   rule (a child tagged on its own, or listed by another index, is kept and recorded in ``kept``).
   Only tagged indexes can be checked: an untagged index elsewhere in the repository that lists the digest is
   not discoverable over the registry API.
5. **Release** restores each tag that still points at a placeholder (or no longer exists) to the exact
   preserved manifest bytes (blobs mounted back from the copy, platform manifests first, the registry's digest
   checked); a tag re-pushed meanwhile is left alone and recorded. The digest itself is restored too. The
   preserved copy stays in the quarantine repository: nothing is ever lost.

Residual race, documented: the registry has no conditional PUT, so a tag re-pushed between the HEAD and the
PUT of step 3 (one round trip) is overwritten by the placeholder; its new digest stays in the repository.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from workers.domain import INDEX_MEDIA_TYPES, Descriptor, Digest, is_tag, parse_digest
from workers.errors import IntegrityError, NotFound, RegistryUnavailable, UnsupportedMediaType
from workers.oci import ImageIndex, parse_manifest
from workers.quarantine.placeholder import Placeholder
from workers.quarantine.state import copy_tag
from workers.registry import DeleteUnsupported, RegistryClient
from workers.signatures.discovery import subject_of_tag

log = logging.getLogger(__name__)

MAX_MANIFESTS = 1024  # an index with more platforms than this is hostile, not an image
MAX_BLOBS = 20_000
MAX_DEPTH = 2  # an index of indexes is allowed once; deeper nesting is refused
TAG_ROUNDS = 3  # rounds of "find tags on the digest, re-point them" before giving up (transient)


@dataclass(frozen=True)
class PreservedManifest:
    """One manifest of the image: exact bytes, and how deep in the index tree it sits (0 is the image itself)."""

    digest: Digest
    media_type: str
    size: int
    depth: int
    raw: bytes = b""

    def to_plan(self) -> dict[str, Any]:
        """What the hold's plan keeps (the bytes live in the quarantine repository)."""
        return {"digest": self.digest, "media_type": self.media_type, "size": self.size, "depth": self.depth}


@dataclass(frozen=True)
class Inventory:
    """Everything the image consists of: its manifests (the image first) and the blobs they name."""

    manifests: tuple[PreservedManifest, ...]
    blobs: tuple[tuple[Digest, int], ...]
    skipped_layers: tuple[Mapping[str, str], ...] = ()

    @property
    def top(self) -> PreservedManifest:
        """The image's own manifest or index."""
        return self.manifests[0]

    @property
    def children(self) -> tuple[PreservedManifest, ...]:
        """Platform (and attestation) manifests of an index, nested ones included."""
        return self.manifests[1:]

    def to_plan(self) -> dict[str, Any]:
        """Plan entries describing the inventory."""
        return {
            "media_type": self.top.media_type,
            "manifests": [m.to_plan() for m in self.manifests],
            "blobs": [{"digest": d, "size": s} for d, s in self.blobs],
            "skipped_layers": [dict(s) for s in self.skipped_layers],
        }


Save = Callable[..., Any]  # persists plan entries (raises Superseded when the move is no longer current)
Step = Callable[[str], None]  # told the name of each finished step (a seam for crash tests)


def _parse(media_type: str, raw: bytes, what: str) -> Any:
    try:
        return parse_manifest(media_type, raw)
    except RecursionError:  # deeply nested JSON from a hostile manifest
        raise IntegrityError(f"{what} is nested too deeply to be a manifest") from None


class Mover:
    """The registry side of one image's moves between ``repository`` and its quarantine copy."""

    def __init__(
        self,
        client: RegistryClient,
        *,
        repository: str,
        digest: Digest,
        copy_repository: str,
        save: Save,
        step: Step | None = None,
    ) -> None:
        self.client = client
        self.repository = repository
        self.digest = digest
        self.copy_repository = copy_repository
        self._save = save
        self._step = step or (lambda _name: None)

    # -- inventory --------------------------------------------------------------------------------------------

    def inventory(self) -> Inventory:
        """Read the image from its repository (or from the copy once the digest was deleted), verified."""
        try:
            return self._read_inventory(self.repository)
        except NotFound:
            log.info("%s@%s is not in its repository; reading the preserved copy", self.repository, self.digest)
        try:
            return self._read_inventory(self.copy_repository)
        except NotFound:
            raise NotFound(
                f"{self.repository}@{self.digest} is neither in its repository nor in {self.copy_repository}"
            ) from None

    def _read_inventory(self, source: str) -> Inventory:
        manifests: list[PreservedManifest] = []
        blobs: dict[Digest, int] = {}
        skipped: list[dict[str, str]] = []
        pending: list[tuple[Digest, int | None, int]] = [(self.digest, None, 0)]
        seen: set[str] = set()
        while pending:
            digest, size, depth = pending.pop(0)
            if digest in seen:
                continue
            seen.add(digest)
            if len(manifests) >= MAX_MANIFESTS:
                raise IntegrityError(f"the image has more than {MAX_MANIFESTS} manifests")
            fetched = self.client.get_manifest(source, digest)
            if size is not None and len(fetched.raw) != size:
                raise IntegrityError(f"manifest {digest} is {len(fetched.raw)} bytes, its descriptor says {size}")
            parsed = _parse(fetched.media_type, fetched.raw, f"manifest {digest}")
            media_type = parsed.media_type
            manifests.append(PreservedManifest(digest, media_type, len(fetched.raw), depth, fetched.raw))
            if isinstance(parsed, ImageIndex):
                if depth >= MAX_DEPTH:
                    raise UnsupportedMediaType(f"index {digest} nests indexes deeper than {MAX_DEPTH}")
                for child in parsed.manifests:
                    pending.append((child.digest, child.size, depth + 1))
                continue
            for descriptor in (parsed.config, *parsed.layers):
                if descriptor.urls and self.client.stat_blob(source, descriptor.digest) is None:
                    skipped.append({"digest": descriptor.digest, "why": "foreign layer (urls), not in the registry"})
                    continue
                known = blobs.setdefault(descriptor.digest, descriptor.size)
                if known != descriptor.size:
                    raise IntegrityError(f"blob {descriptor.digest} is given two sizes ({known}, {descriptor.size})")
            if len(blobs) > MAX_BLOBS:
                raise IntegrityError(f"the image names more than {MAX_BLOBS} blobs")
        return Inventory(tuple(manifests), tuple(blobs.items()), tuple(skipped))

    def preserved_inventory(self, plan: Mapping[str, Any]) -> Inventory:
        """The inventory the plan recorded, with each manifest's bytes read back from the copy (verified)."""
        manifests = []
        for entry in plan.get("manifests") or ():
            digest = parse_digest(entry["digest"])
            fetched = self.client.get_manifest(self.copy_repository, digest)
            manifests.append(
                PreservedManifest(digest, str(entry["media_type"]), len(fetched.raw), int(entry["depth"]), fetched.raw)
            )
        blobs = tuple((parse_digest(b["digest"]), int(b["size"])) for b in plan.get("blobs") or ())
        if not manifests:
            raise IntegrityError("the plan records no preserved manifests")
        return Inventory(tuple(manifests), blobs)

    # -- preserve and verify ----------------------------------------------------------------------------------

    def _ensure_blob(self, digest: Digest, size: int, *, into: str, source: str) -> str:
        """Make ``into`` hold the blob: already there, mounted from ``source``, or streamed; which one it was."""
        there = self.client.stat_blob(into, digest)
        if there == size:
            return "present"
        if there is not None:
            raise IntegrityError(f"blob {digest} in {into} is {there} bytes, expected {size}")
        if self.client.mount_blob(into, digest, source):
            return "mounted"
        self.client.copy_blob(digest, from_repository=source, to_repository=into, size=size)
        return "copied"

    def preserve(self, inventory: Inventory, *, source: str | None = None) -> dict[str, int]:
        """Copy every blob and manifest into the quarantine repository; counts of present/mounted/copied blobs."""
        origin = source or self.repository
        counts = {"present": 0, "mounted": 0, "copied": 0}
        for digest, size in inventory.blobs:
            try:
                counts[self._ensure_blob(digest, size, into=self.copy_repository, source=origin)] += 1
            except NotFound:
                if origin == self.copy_repository:
                    raise
                # The repository lost it (the digest was deleted and garbage-collected): only the copy is left.
                if self.client.stat_blob(self.copy_repository, digest) != size:
                    raise
                counts["present"] += 1
        # Deepest first: a registry accepts an index only once the manifests it lists exist.
        for manifest in sorted(inventory.manifests, key=lambda m: -m.depth):
            self._put_exact(self.copy_repository, manifest, manifest.digest)
            self._put_exact(self.copy_repository, manifest, copy_tag(manifest.digest))
        return counts

    def _put_exact(self, repository: str, manifest: PreservedManifest, reference: str) -> None:
        stored = self.client.put_manifest(repository, reference, manifest.raw, manifest.media_type)
        if stored != manifest.digest:
            raise IntegrityError(f"{repository}:{reference} was stored as {stored}, not {manifest.digest}")

    def verify_copy(self, inventory: Inventory) -> None:
        """Every blob (digest, size) and manifest (exact bytes, and its tag) is in the quarantine repository."""
        for digest, size in inventory.blobs:
            there = self.client.stat_blob(self.copy_repository, digest)
            if there != size:
                raise IntegrityError(f"the copy lacks blob {digest} ({size} bytes; found {there})")
        for manifest in inventory.manifests:
            fetched = self.client.get_manifest(self.copy_repository, manifest.digest)
            if fetched.raw != manifest.raw:
                raise IntegrityError(f"the copy of manifest {manifest.digest} differs")
            tagged = self.client.head_manifest(self.copy_repository, copy_tag(manifest.digest))
            if tagged is None or tagged.digest != manifest.digest:
                raise IntegrityError(f"the copy's tag {copy_tag(manifest.digest)} does not name {manifest.digest}")

    # -- out of service ---------------------------------------------------------------------------------------

    def tag_map(self) -> dict[str, Descriptor]:
        """Where every tag of the repository points now (signature tags excluded: they are not the image)."""
        found: dict[str, Descriptor] = {}
        for tag in self.client.list_tags(self.repository):
            if not is_tag(tag) or subject_of_tag(tag) is not None:
                continue
            descriptor = self.client.head_manifest(self.repository, tag)
            if descriptor is not None:
                found[tag] = descriptor
        return found

    def push_placeholder_blobs(self, placeholder: Placeholder) -> None:
        """Upload the placeholder's config and layer into the repository (once)."""
        for digest, data in placeholder.blobs:
            if self.client.stat_blob(self.repository, digest) != len(data):
                self.client.upload_blob(self.repository, data)

    def take_out(
        self, placeholder: Placeholder, *, plan_tags: Iterable[str]
    ) -> tuple[list[str], dict[str, Descriptor]]:
        """Re-point every tag on the digest to ``placeholder``; the tags moved so far and the final tag map.

        The tag list is saved before any PUT, so a crash after a re-point still knows what to restore.
        """
        moved = sorted(set(plan_tags))
        listing: dict[str, Descriptor] = {}
        for _round in range(TAG_ROUNDS):
            listing = self.tag_map()
            targets = sorted(tag for tag, d in listing.items() if d.digest == self.digest)
            if not targets:
                return moved, listing
            moved = sorted(set(moved) | set(targets))
            self._save(tags=moved)
            for tag in targets:
                current = self.client.head_manifest(self.repository, tag)
                if current is None or current.digest != self.digest:
                    continue  # re-pushed or deleted since the listing: not ours to touch
                stored = self.client.put_manifest(self.repository, tag, placeholder.manifest, placeholder.media_type)
                if stored != placeholder.digest:
                    raise IntegrityError(f"{self.repository}:{tag} was stored as {stored}, not the placeholder")
                self._step(f"repointed:{tag}")
        raise RegistryUnavailable(f"tags keep being pushed to {self.repository}@{self.digest}; will try again")

    def delete_if_safe(
        self, inventory: Inventory, listing: Mapping[str, Descriptor], *, placeholders: Iterable[str]
    ) -> dict[str, Any]:
        """Delete the digest (and its platform manifests) when nothing else needs it; the plan's mode entries."""
        ours = {m.digest for m in inventory.manifests}
        skip = ours | set(placeholders)
        listed_by: dict[str, list[str]] = {}  # digest -> tags of other indexes listing it
        unreadable: list[str] = []
        for tag, descriptor in sorted(listing.items()):
            if descriptor.digest in skip or descriptor.media_type not in INDEX_MEDIA_TYPES:
                continue
            try:
                fetched = self.client.get_manifest(self.repository, descriptor.digest)
                parsed = _parse(fetched.media_type, fetched.raw, f"index {tag}")
            except (IntegrityError, UnsupportedMediaType, NotFound) as exc:
                unreadable.append(f"{tag} ({type(exc).__name__})")
                continue
            if isinstance(parsed, ImageIndex):
                for child in parsed.manifests:
                    listed_by.setdefault(child.digest, []).append(tag)
        tagged: dict[str, list[str]] = {}
        for tag, descriptor in listing.items():
            tagged.setdefault(descriptor.digest, []).append(tag)

        def why_needed(digest: str) -> str | None:
            if tagged.get(digest):
                return f"still tagged as {', '.join(sorted(tagged[digest]))}"
            if listed_by.get(digest):
                return f"listed by the index tagged {', '.join(sorted(listed_by[digest]))}, which is not quarantined"
            if unreadable:
                return f"the index tagged {', '.join(unreadable)} could not be read, so it may list it"
            return None

        top_reason = why_needed(self.digest)
        if top_reason is not None:
            return {"mode": "repointed", "mode_reason": f"the digest is kept: {top_reason}", "deleted": [], "kept": []}
        deleted: list[str] = []
        kept: list[dict[str, str]] = []
        try:
            self._delete(self.digest)
            deleted.append(self.digest)
            for part in inventory.children:
                reason = why_needed(part.digest)
                if reason is not None:
                    kept.append({"digest": part.digest, "why": reason})
                    continue
                self._delete(part.digest)
                deleted.append(part.digest)
        except DeleteUnsupported:
            kept.extend(
                {"digest": m.digest, "why": "the registry refuses deletes"}
                for m in inventory.manifests
                if m.digest not in deleted
            )
            if not deleted:
                return {
                    "mode": "repointed",
                    "mode_reason": "the registry refuses deletes (405); the digest can still be pulled by digest",
                    "deleted": [],
                    "kept": kept,
                }
        return {
            "mode": "deleted",
            "mode_reason": "every tag of the digest was quarantined and nothing else in the repository lists it",
            "deleted": deleted,
            "kept": kept,
        }

    def _delete(self, digest: Digest) -> None:
        with contextlib.suppress(NotFound):  # deleted by an earlier run of this move
            self.client.delete_manifest(self.repository, digest)
        self._step(f"deleted:{digest}")

    def verify_out_of_service(self, tags: Iterable[str], deleted: Iterable[str]) -> None:
        """No moved tag resolves to the digest, and deleted manifests no longer resolve; transient otherwise."""
        for tag in tags:
            current = self.client.head_manifest(self.repository, tag)
            if current is not None and current.digest == self.digest:
                raise RegistryUnavailable(f"{self.repository}:{tag} points at the digest again; will try again")
        for digest in deleted:
            if self.client.head_manifest(self.repository, digest) is not None:
                raise RegistryUnavailable(f"{self.repository}@{digest} still resolves after its delete")

    # -- release ----------------------------------------------------------------------------------------------

    def release(self, plan: Mapping[str, Any]) -> dict[str, Any]:
        """Restore the image from the copy and every moved tag that still points at a placeholder (or is gone)."""
        tags = [str(t) for t in plan.get("tags") or ()]
        if not plan.get("preserved"):
            # Tags are moved only after the copy is verified: without a verified copy nothing was moved.
            return {"restored": [], "left": [], "note": "nothing had been moved"}
        inventory = self.preserved_inventory(plan)
        for digest, size in inventory.blobs:
            self._ensure_blob(digest, size, into=self.repository, source=self.copy_repository)
        for manifest in sorted(inventory.manifests, key=lambda m: -m.depth):
            if self.client.head_manifest(self.repository, manifest.digest) is None:
                self._put_exact(self.repository, manifest, manifest.digest)
        self._step("restored-digest")
        placeholders = {str(p) for p in plan.get("placeholders") or ()}
        restored: list[str] = []
        left: list[dict[str, str | None]] = []
        for tag in tags:
            current = self.client.head_manifest(self.repository, tag)
            if current is not None and current.digest == self.digest:
                restored.append(tag)
            elif current is None or current.digest in placeholders:
                self._put_exact(self.repository, inventory.top, tag)
                restored.append(tag)
                self._step(f"restored:{tag}")
            else:
                left.append({"tag": tag, "digest": current.digest, "why": "re-pushed while held; left alone"})
        fetched = self.client.get_manifest(self.repository, self.digest)
        if fetched.raw != inventory.top.raw:
            raise IntegrityError(f"{self.repository}@{self.digest} does not serve the preserved bytes")
        for tag in restored:
            current = self.client.head_manifest(self.repository, tag)
            if current is None or current.digest != self.digest:
                raise RegistryUnavailable(f"{self.repository}:{tag} moved while being restored; will try again")
        return {"restored": restored, "left": left}
