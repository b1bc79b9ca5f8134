"""Decide: roll findings up to a verdict with an explanation, and map the verdict to an action."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from workers.domain import Action, Confidence, Finding, Severity, Verdict

DEFAULT_ACTIONS: Mapping[Verdict, Action] = {
    Verdict.CLEAN: Action.ALLOW,
    Verdict.SUSPICIOUS: Action.WARN,
    Verdict.MALICIOUS: Action.QUARANTINE,
}


@dataclass(frozen=True)
class Decision:
    """A verdict, the action policy takes for it, and why."""

    verdict: Verdict
    action: Action
    explanation: str


@dataclass(frozen=True)
class Policy:
    """Maps verdicts to actions; per-repository rules arrive with the policy file."""

    actions: Mapping[Verdict, Action] = field(default_factory=lambda: dict(DEFAULT_ACTIONS))

    def action_for(self, verdict: Verdict, repository: str) -> Action:
        """The action for ``verdict`` in ``repository``."""
        return self.actions[verdict]


def _weight(finding: Finding) -> Verdict:
    """What a single finding is worth on its own."""
    sev, conf = finding.severity, finding.confidence
    if sev is Severity.CRITICAL and conf is not Confidence.LOW:
        return Verdict.MALICIOUS
    if sev is Severity.HIGH and conf is Confidence.HIGH:
        return Verdict.MALICIOUS
    if sev.rank >= Severity.HIGH.rank or (sev is Severity.MEDIUM and conf is not Confidence.LOW):
        return Verdict.SUSPICIOUS
    return Verdict.CLEAN


_ORDER = {Verdict.CLEAN: 0, Verdict.SUSPICIOUS: 1, Verdict.MALICIOUS: 2}


def rollup(findings: Iterable[Finding]) -> tuple[Verdict, str]:
    """The worst verdict any unwaived finding supports, and a sentence naming the findings that decided it."""
    active = [f for f in findings if not f.waived]
    verdict = Verdict.CLEAN
    for finding in active:
        weight = _weight(finding)
        if _ORDER[weight] > _ORDER[verdict]:
            verdict = weight
    if verdict is Verdict.CLEAN:
        minor = len(active)
        return verdict, (f"no finding reaches suspicious ({minor} informational)" if minor else "no findings")
    deciding = [f for f in active if _weight(f) is verdict]
    named = sorted({f"{f.rule} ({f.severity.value}, {f.category.value})" for f in deciding})
    shown = ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")
    return verdict, f"{verdict.value} because of {shown}"


def decide(findings: Iterable[Finding], repository: str, policy: Policy | None = None) -> Decision:
    """Findings → verdict → action, with the explanation shown to developers."""
    verdict, explanation = rollup(findings)
    action = (policy or Policy()).action_for(verdict, repository)
    return Decision(verdict=verdict, action=action, explanation=explanation)
