"""The image source a scan of a held image reads: its repository, and the preserved copy for what was deleted."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import BinaryIO

from workers.domain import Digest
from workers.errors import NotFound
from workers.quarantine.state import get_hold
from workers.registry import FetchedManifest, RegistryClient
from workers.sources import RegistrySource
from workers.store import Store


class PreservedFallbackSource(RegistrySource):
    """``repository`` as the scan knows it, reading by digest from the quarantine copy what it no longer holds.

    A held image whose digest was deleted is still rescanned (a new ruleset, a signature pushed after it):
    the content is the same bytes, verified by digest wherever it is read from. By tag nothing falls back: a
    tag is whatever the repository says it is.
    """

    def __init__(self, client: RegistryClient, repository: str, copy_repository: str) -> None:
        super().__init__(client, repository)
        self._copy = copy_repository

    def get_manifest(self, reference: str) -> FetchedManifest:
        """By tag from the repository; by digest from the repository, else from the copy."""
        try:
            return super().get_manifest(reference)
        except NotFound:
            if ":" not in reference:
                raise
            return self.client.get_manifest(self._copy, reference)

    def get_blob(self, digest: Digest, *, max_bytes: int) -> bytes:
        """A verified blob from the repository, else from the copy."""
        try:
            return super().get_blob(digest, max_bytes=max_bytes)
        except NotFound:
            return self.client.get_blob(self._copy, digest, max_bytes=max_bytes)

    @contextlib.contextmanager
    def open_blob(self, digest: Digest, *, expected_size: int | None = None) -> Iterator[BinaryIO]:
        """A verifying stream from the repository, else from the copy."""
        with contextlib.ExitStack() as stack:
            try:
                stream = stack.enter_context(
                    self.client.open_blob(self.repository, digest, expected_size=expected_size)
                )
            except NotFound:
                stream = stack.enter_context(self.client.open_blob(self._copy, digest, expected_size=expected_size))
            yield stream


def scan_source(store: Store, client: RegistryClient, repository: str, digest: Digest) -> RegistrySource:
    """The source to scan ``repository@digest`` from: with the copy as fallback once one was preserved."""
    hold = get_hold(store, repository, digest)
    if hold is not None and hold.copy_repository and hold.plan.get("preserved"):
        return PreservedFallbackSource(client, repository, hold.copy_repository)
    return RegistrySource(client, repository)
