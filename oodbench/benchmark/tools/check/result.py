"""What a check of a detector found: one :class:`Finding` per check (pass / warn / fail / skip), collected
in a :class:`CheckResult` per detector that ``oodbench check`` prints."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Finding:
    check: str
    status: str  # pass | warn | fail | skip
    message: str = ""


@dataclass
class CheckResult:
    """All findings about one detector (contract and, with a suite, its baseline comparison)."""

    detector: str
    findings: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # (group, metric) -> value, from the suite run
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not any(f.status == "fail" for f in self.findings)

    @property
    def failures(self) -> list:
        return [f for f in self.findings if f.status == "fail"]

    def add(self, check, status, message=""):
        self.findings.append(Finding(check, status, message))

    def summary(self) -> str:
        head = f"{self.detector}: {'PASSED' if self.passed else 'FAILED'} ({self.seconds:.1f} s)"
        lines = [head] + [f"  [{f.status:4}] {f.check}" + (f": {f.message}" if f.message else "") for f in self.findings]
        return "\n".join(lines)


def describe(e: BaseException) -> str:
    """An exception as ``Type: first line of its message`` (at most 300 characters)."""
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
