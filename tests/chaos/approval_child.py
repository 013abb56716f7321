"""A production deploy in a process of its own (as a worker runs it), for the approval-wait chaos scenarios.

`python -m tests.chaos.approval_child ENV REF SPEC_DIR` runs the real deploy flow against $PREFECT_API_URL and prints
one JSON line: the outcome (or the crash), the release, the flow run, and the deployments the in-process memory
target made (its state lives in this process).
"""

from __future__ import annotations

import asyncio
import json
import sys

from flows.deploy import deploy_flow, report_of
from tests.standins.memory import _WORLDS


async def main(env: str, ref: str, spec_dir: str) -> dict[str, object]:
    state = await deploy_flow(env, ref, spec_dir=spec_dir, return_state=True)
    deployments = {f"{world}/{svc}": len(s.deployments) for world, svcs in _WORLDS.items() for svc, s in svcs.items()}
    try:
        report = await report_of(state)
    except Exception as exc:  # the flow ended without a report
        return {"outcome": f"CRASHED {type(exc).__name__}: {exc}", "deployments": deployments}
    return {"outcome": str(report.outcome.value), "error": report.error, "release_id": report.release_id,
            "flow_run_id": report.flow_run_id, "deployments": deployments,
            "approval": report.approval.decision if report.approval else None}


if __name__ == "__main__":
    print("RESULT " + json.dumps(asyncio.run(main(*sys.argv[1:4]))), flush=True)
