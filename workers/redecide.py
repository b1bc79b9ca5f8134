"""Re-decision: decide an image again from its stored findings with the current waivers and policy; no rescan.

Queued when a waiver that matches the image's findings is created, revoked or expires
(``workers.waivers.schedule_redecisions``). The stored signature checks are judged again under the current
trust policy (a policy change re-verifies them instead: ``workers.policy_versions``), so no registry is
needed. The job ends like every deciding job, through ``workers.jobs.finish_decision``: a changed verdict
or action is audited and quarantine is enforced or released.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from workers.domain import Digest, ScanStatus, parse_digest
from workers.errors import ConfigError
from workers.policy import decide, judge_signatures
from workers.policy_versions import effective_policy
from workers.signatures.model import SignatureCheck, SignatureFormat, SignatureKind
from workers.waivers import active_waivers, apply_waivers

log = logging.getLogger(__name__)


def stored_checks(stored: Sequence[Mapping[str, Any]]) -> tuple[SignatureCheck, ...]:
    """The signature checks of a record (``SignatureCheck.to_json`` forms) as checks; malformed ones are skipped."""
    out: list[SignatureCheck] = []
    for item in stored:
        try:
            moment = item.get("time")
            out.append(
                SignatureCheck(
                    kind=SignatureKind(item["kind"]),
                    format=SignatureFormat(item["format"]),
                    subject=Digest(str(item["subject"])),
                    verified=item["verified"] is True,
                    reason=str(item.get("reason") or ""),
                    source=str(item.get("source") or ""),
                    identity=item.get("identity"),
                    issuer=item.get("issuer"),
                    log_index=item.get("log_index"),
                    integrated_time=datetime.fromisoformat(moment) if isinstance(moment, str) else None,
                    workflow_repository=item.get("workflow_repository"),
                    workflow_ref=item.get("workflow_ref"),
                    predicate_type=item.get("predicate_type"),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("a stored signature check is malformed and not counted: %r", str(item)[:200])
    return tuple(out)


def redecide_image(repository: str, digest: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Decide ``repository@digest`` again from its stored findings and signature checks; no rescan.

    ``now`` (default: the store's clock) is when waivers are judged active and the grace period ends.
    Result ``status``: ``done`` (as the scan job's), ``skipped`` (no completed scan, or a rescan finished in
    between: its own decision stands) or ``error`` (the policy in force cannot be read: nothing changes, the
    previous decision stands and the error is logged, as for re-verification).
    """
    from workers.jobs import _settings, _store, store_redecision

    settings = _settings()
    store = _store()
    checked = parse_digest(digest)
    record = store.get_record(repository, checked)
    if record is None or record.status is not ScanStatus.DONE or record.verdict is None:
        return {"status": "skipped", "reason": "no completed scan of this image"}
    moment = now or store.now()
    try:
        policy = effective_policy(store, settings)
    except ConfigError as exc:
        log.warning("re-decision of %s@%s not done: %s", repository, digest, exc.diagnostics())
        return {"status": "error", "error": exc.diagnostics()}
    found = apply_waivers(record.findings, active_waivers(store, moment), repository, checked, moment)
    effective = policy.for_repository(repository)
    signatures = judge_signatures(
        effective.signatures,
        stored_checks(record.signatures),
        pushed_at=record.first_seen,
        now=moment,
        scope=effective.match,
    )
    decision = decide(found, repository, policy, signatures=signatures)
    return store_redecision(settings, store, record, decision, found)
