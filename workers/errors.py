"""The one error tree of Tollgate: transient errors are retried, permanent ones are recorded."""

from __future__ import annotations


class TollgateError(Exception):
    """Root of every error Tollgate raises on purpose."""

    transient: bool = False

    def diagnostics(self) -> str:
        """A human-readable explanation suitable for a status page."""
        return str(self)


class TransientError(TollgateError):
    """Something that may work if tried again later (network, 5xx, Redis or database down)."""

    transient = True


class PermanentError(TollgateError):
    """Something that will fail the same way every time; record it, never retry, never pass."""


class ConfigError(PermanentError):
    """Settings, policy or rule files are invalid."""


class RuleLoadError(ConfigError):
    """A rule file failed to load or compile; the message names the file and line."""


class RegistryError(TollgateError):
    """Base for registry protocol failures."""


class RegistryUnavailable(RegistryError, TransientError):
    """The registry timed out, refused the connection or answered 5xx/429."""


class RegistryAuthError(RegistryError, PermanentError):
    """The registry refused our credentials (401/403 after authenticating)."""


class NotFound(RegistryError, PermanentError):
    """The manifest, blob or repository does not exist."""


class RegistryProtocolError(RegistryError, PermanentError):
    """The registry answered something that does not follow the distribution spec."""


class IntegrityError(PermanentError):
    """Content does not match its digest, or a manifest is malformed."""


class UnsafeArchiveError(PermanentError):
    """A layer is hostile to the unpacker (bomb, traversal, device file, corrupt stream)."""


class LimitExceeded(UnsafeArchiveError):
    """A layer breached an unpacking cap (entries, bytes, file size or compression ratio)."""


class UnsupportedMediaType(PermanentError):
    """The manifest or layer is of a type Tollgate does not scan."""


class QueueUnavailable(TransientError):
    """The job could not be made durable in Redis."""


class StoreUnavailable(TransientError):
    """The database could not be reached."""


class SignatureError(PermanentError):
    """A signature or attestation is malformed or does not verify (recorded on the check, never a pass)."""


class UnknownImage(PermanentError):
    """Tollgate has no record of the image an action names."""


class ActionRefused(PermanentError):
    """The action does not fit the image's or the object's current state (e.g. releasing what is not held)."""
