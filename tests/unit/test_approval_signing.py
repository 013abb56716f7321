"""Approval signatures: SSHSIG compatible with ssh-keygen both ways; every refusal rule of the gate, one by one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deployments.spec import ApprovalSpec
from providers.approval.keys import Approver, load_approvers, parse_allowed_signers
from providers.approval.signing import (
    NAMESPACE,
    ApprovalMessage,
    load_private_key,
    one_line,
    parse_public_key,
    parse_signature,
    sign,
    verify,
)
from providers.approval.verify import Answer, Refusal, judge, message_for
from providers.errors import ConfigError
from tests.approval_keys import make_key

PLAN = "## Approve deploy of `v1.0.0` (abc) to **prod**\n\n| service | ... |"
RUN = "7d9f5c1e-0000-4000-8000-000000000001"


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    return {n: make_key(tmp_path / "keys", n) for n in ("ana", "ops", "mallory")}


def approvers(keys: dict[str, tuple[Path, str]]) -> dict[str, Approver]:
    return {
        "ana.lead": Approver("ana.lead", [parse_public_key(keys["ana"][1])], {"ana.lead", "ana"}),
        "ops.oncall": Approver("ops.oncall", [parse_public_key(keys["ops"][1])], {"ops.oncall"}),
    }


def signed(keys: dict[str, tuple[Path, str]], who: str, *, run: str = RUN, plan: str = PLAN, approve: bool = True,
           approver: str = "ana.lead", reason: str = "staging green") -> Answer:
    answer = Answer(approve, approver, reason, False, "")
    key = load_private_key(keys[who][0].read_bytes())
    sig = sign(key, message_for(run, answer, plan).canonical())
    return Answer(approve, approver, reason, False, sig)


def test_a_valid_signature_is_accepted_with_its_fingerprint(keys: dict[str, tuple[Path, str]]) -> None:
    verdict = judge(signed(keys, "ana"), approvers(keys), RUN, PLAN, starters={"ci-bot"})
    assert verdict.accepted, verdict.message
    assert verdict.fingerprint == parse_public_key(keys["ana"][1]).fingerprint
    assert verdict.fingerprint is not None and verdict.fingerprint.startswith("SHA256:")
    one = signed(keys, "ana")
    assert judge(Answer(True, "ana.lead", "staging green", False, one_line(one.signature)), approvers(keys), RUN,
                 PLAN, set()).accepted  # the one-line form pasted into the UI reads the same
    flat = one.signature.replace("\n", "")  # armored, pasted into a one-line field that dropped the newlines
    assert judge(Answer(True, "ana.lead", "staging green", False, flat), approvers(keys), RUN, PLAN, set()).accepted


@pytest.mark.parametrize(("case", "expected"), [
    ("missing", Refusal.MISSING_SIGNATURE),
    ("garbage", Refusal.MALFORMED_SIGNATURE),
    ("forged", Refusal.UNKNOWN_KEY),          # mallory signs, claiming to be ana.lead
    ("other-approver-key", Refusal.UNKNOWN_KEY),
    ("other-run", Refusal.BAD_SIGNATURE),     # a replay of ana's answer to another run
    ("other-plan", Refusal.BAD_SIGNATURE),    # signed for a plan other than the one shown
    ("flipped-decision", Refusal.BAD_SIGNATURE),
    ("edited-reason", Refusal.BAD_SIGNATURE),
    ("destructive-added", Refusal.BAD_SIGNATURE),
    ("self-approval", Refusal.SELF_APPROVAL),
    ("not-listed", Refusal.NOT_AN_APPROVER),
    ("no-reason", Refusal.NO_REASON),
])
def test_each_refusal(keys: dict[str, tuple[Path, str]], case: str, expected: Refusal) -> None:
    good = signed(keys, "ana")
    starters = {"ci-bot"}
    answer = {
        "missing": Answer(True, "ana.lead", "staging green", False, ""),
        "garbage": Answer(True, "ana.lead", "staging green", False, "not a signature"),
        "forged": signed(keys, "mallory"),
        "other-approver-key": signed(keys, "ops"),
        "other-run": signed(keys, "ana", run="7d9f5c1e-0000-4000-8000-000000000002"),
        "other-plan": signed(keys, "ana", plan=PLAN + " (older plan)"),
        "flipped-decision": Answer(False, "ana.lead", "staging green", False, good.signature),
        "edited-reason": Answer(True, "ana.lead", "because I said so", False, good.signature),
        "destructive-added": Answer(True, "ana.lead", "staging green", True, good.signature),
        "self-approval": good,
        "not-listed": signed(keys, "mallory", approver="mallory"),
        "no-reason": Answer(True, "ana.lead", " ", False, good.signature),
    }[case]
    if case == "self-approval":
        starters = {"ana"}  # ana started the run (her OS user is one of her identities)
    verdict = judge(answer, approvers(keys), RUN, PLAN, starters)
    assert verdict.refusal == expected, verdict.message
    assert verdict.fingerprint is None


def test_the_starter_may_still_reject_their_own_run(keys: dict[str, tuple[Path, str]]) -> None:
    verdict = judge(signed(keys, "ana", approve=False), approvers(keys), RUN, PLAN, {"ana"})
    assert verdict.accepted and verdict.message.startswith("rejected by ana.lead")


def test_ssh_keygen_verifies_our_signature_and_we_verify_its(tmp_path: Path, keys: dict[str, tuple[Path, str]]) -> None:
    message = ApprovalMessage(RUN, "approve", "00" * 32, False, "go").canonical()
    ours = sign(load_private_key(keys["ana"][0].read_bytes()), message)
    (tmp_path / "sig").write_text(ours)
    (tmp_path / "allowed").write_text(f"ana.lead {keys['ana'][1]}\n")
    out = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "ana.lead",
                          "-n", NAMESPACE, "-s", str(tmp_path / "sig")], input=message, capture_output=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    (tmp_path / "msg").write_bytes(message)
    made = subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(keys["ana"][0]), "-n", NAMESPACE,
                           str(tmp_path / "msg")], capture_output=True, check=False)
    assert made.returncode == 0, made.stderr
    theirs = parse_signature((tmp_path / "msg.sig").read_text())
    verify(theirs, message)
    assert theirs.key.blob == parse_public_key(keys["ana"][1]).blob


def test_fingerprint_is_what_ssh_keygen_prints(keys: dict[str, tuple[Path, str]]) -> None:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(keys["ana"][0]) + ".pub"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split()[1] == parse_public_key(keys["ana"][1]).fingerprint


async def test_approvers_from_spec_and_allowed_signers(tmp_path: Path, keys: dict[str, tuple[Path, str]]) -> None:
    (tmp_path / "allowed_signers").write_text(
        f"# approvers of prod\nops.oncall {keys['ops'][1]}\n"
        f'git-only namespaces="git" {keys["mallory"][1]}\n')
    spec = ApprovalSpec.model_validate({"required": True, "allowed_signers": "allowed_signers", "approvers": [
        {"name": "ana.lead", "public_key": keys["ana"][1], "aliases": ["ana"]}]})
    found = await load_approvers(spec, tmp_path / "prod.yaml")
    assert sorted(found) == ["ana.lead", "ops.oncall"]  # the git-only line is not for approvals
    assert found["ana.lead"].identities == {"ana.lead", "ana"}
    assert [k.fingerprint for k in found["ops.oncall"].keys] == [parse_public_key(keys["ops"][1]).fingerprint]


def test_bad_keys_and_plain_names_are_refused_with_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="approvals are signed"):
        ApprovalSpec.model_validate({"approvers": ["ana.lead"]})
    with pytest.raises(ValueError, match=r"approvers\.0\.public_key"):  # refused when the spec loads
        ApprovalSpec.model_validate({"approvers": [{"name": "ana.lead", "public_key": "ssh-rsa AAAAB3NzaC1yc2E= x"}]})
    with pytest.raises(ConfigError, match="not supported"):
        parse_public_key("ssh-rsa AAAAB3NzaC1yc2E= x")
    with pytest.raises(ConfigError, match="line 1"):
        parse_allowed_signers("ana ssh-ed25519 !!!notbase64", "allowed")
