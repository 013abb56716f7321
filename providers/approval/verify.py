"""Judge one answer to the approval gate: a listed approver, their key, a signature over this run and plan."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from providers.approval.keys import Approver
from providers.approval.signing import ApprovalMessage, SignatureError, parse_signature, plan_digest, verify


class Refusal(StrEnum):
    """Why an answer was refused (the run keeps waiting after each)."""

    NOT_AN_APPROVER = "not an approver"
    NO_REASON = "no reason"
    MISSING_SIGNATURE = "missing signature"
    MALFORMED_SIGNATURE = "malformed signature"
    UNKNOWN_KEY = "unknown key"
    BAD_SIGNATURE = "bad signature"
    SELF_APPROVAL = "self-approval"


@dataclass(frozen=True)
class Answer:
    """What the approver filled in (Resume dialog or `aevon-deploy approve`)."""

    approve: bool
    approver: str
    reason: str
    allow_destructive: bool
    signature: str


@dataclass(frozen=True)
class Verdict:
    """Accepted (`refusal` None, with the signing key's fingerprint) or refused with a message for the log."""

    refusal: Refusal | None
    message: str
    fingerprint: str | None = None

    @property
    def accepted(self) -> bool:
        return self.refusal is None


def message_for(run_id: str, answer: Answer, plan_markdown: str) -> ApprovalMessage:
    """The canonical message an answer to run `run_id` must carry the signature of."""
    return ApprovalMessage(run_id=run_id, decision="approve" if answer.approve else "reject",
                           plan_sha256=plan_digest(plan_markdown), allow_destructive=answer.allow_destructive,
                           reason=answer.reason)


def judge(
    answer: Answer, approvers: dict[str, Approver], run_id: str, plan_markdown: str, starters: set[str]
) -> Verdict:
    """Accept the answer only if every rule holds; the first rule broken is the refusal.

    `starters` are the identities of whoever started the run: an approver any of whose identities is among them
    cannot approve it (they may still reject their own run).
    """
    name = answer.approver.strip()
    who = approvers.get(name)
    if who is None:
        listed = ", ".join(sorted(approvers)) or "none"
        return Verdict(Refusal.NOT_AN_APPROVER, f"{name!r} is not an approver (approvers: {listed})")
    if not answer.reason.strip():
        return Verdict(Refusal.NO_REASON, f"answer from {name} has no reason")
    if not answer.signature.strip():
        return Verdict(Refusal.MISSING_SIGNATURE, f"answer from {name} is not signed (sign it with "
                       "`aevon-deploy approve RUN_ID --as NAME --key KEY --reason ... [--print-signature]`)")
    try:
        sig = parse_signature(answer.signature)
    except SignatureError as exc:
        return Verdict(Refusal.MALFORMED_SIGNATURE, f"answer from {name}: {exc}")
    key = who.key_for(sig.key)
    if key is None:
        other = next((a.name for a in approvers.values() if a.key_for(sig.key) is not None), None)
        whose = f"it is {other}'s key" if other else "no approver has this key"
        return Verdict(Refusal.UNKNOWN_KEY, f"answer from {name} signed with {sig.key.fingerprint}: {whose}")
    try:
        verify(sig, message_for(run_id, answer, plan_markdown).canonical())
    except SignatureError as exc:
        return Verdict(Refusal.BAD_SIGNATURE, f"answer from {name} ({key.fingerprint}): {exc} "
                       "(forged, or signed for another run or plan)")
    if answer.approve and who.identities & starters:
        return Verdict(Refusal.SELF_APPROVAL, f"{name} started this run and cannot approve it "
                       f"(started by {', '.join(sorted(who.identities & starters))}); another approver must")
    decision = "approved" if answer.approve else "rejected"
    return Verdict(None, f"{decision} by {name} ({key.fingerprint}): {answer.reason.strip()}", key.fingerprint)
