"""A local Prometheus and blackbox exporter (Debian packages) over the dev rules: config, argv, detached start/stop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "dev-rules.yml"
BLACKBOX_MODULES = HERE / "blackbox.yml"
PROMETHEUS = "/usr/bin/prometheus"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"


def alert_rules() -> list[dict[str, Any]]:
    """The alert rules of dev-rules.yml (its one group)."""
    rules: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    return rules


def write_config(folder: Path, *, prometheus_port: int, blackbox_port: int, probe_url: str, service: str = "api",
                 extra_rules: list[dict[str, Any]] | None = None) -> None:
    """prometheus.yml, rules.yml and blackbox.yml in `folder`.

    The blackbox exporter probes `probe_url` (module `http_2xx`); Prometheus scrapes that probe every second with the
    label `service`, scrapes itself, and evaluates dev-rules.yml's rules (plus `extra_rules`) every second.
    """
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BLACKBOX_MODULES, folder / "blackbox.yml")
    rules: dict[str, Any] = yaml.safe_load(RULES.read_text())
    rules["groups"][0]["rules"] += list(extra_rules or [])
    (folder / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    (folder / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(folder / "rules.yml")],
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{prometheus_port}"]}]},
            {"job_name": f"probe-{service}", "metrics_path": "/probe",
             "params": {"module": ["http_2xx"], "target": [probe_url]},
             "static_configs": [{"targets": [f"127.0.0.1:{blackbox_port}"], "labels": {"service": service}}]},
        ],
    }, sort_keys=False))


def blackbox_argv(folder: Path, port: int) -> list[str]:
    """The blackbox exporter over `folder`/blackbox.yml on 127.0.0.1:`port` (ready: GET /metrics)."""
    return [BLACKBOX, f"--config.file={folder / 'blackbox.yml'}", f"--web.listen-address=127.0.0.1:{port}"]


def prometheus_argv(folder: Path, port: int) -> list[str]:
    """Prometheus over `folder`/prometheus.yml, data in `folder`/data, on 127.0.0.1:`port` (ready: GET /-/ready)."""
    return [PROMETHEUS, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--rules.alert.resend-delay=1s",
            f"--web.console.templates={folder}", f"--web.console.libraries={folder}"]


def start_detached(argv: list[str], pidfile: Path, log: Path, ready_url: str, *, env: Mapping[str, str] | None = None,
                   cwd: Path | None = None, timeout_s: float = 30.0) -> int:
    """Start `argv` in a session of its own, recorded in `pidfile`; wait until `ready_url` answers below 500.

    Raises RuntimeError (with the log's tail) when it exits or is not ready in time; it is stopped then.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
    pidfile.write_text(json.dumps({"pid": proc.pid, "argv": argv}))
    deadline = time.monotonic() + timeout_s
    with httpx.Client(trust_env=False, timeout=2) as client:
        while True:
            if proc.poll() is not None:
                pidfile.unlink(missing_ok=True)
                raise RuntimeError(f"{argv[0]} exited {proc.returncode}; {log}:\n{_tail(log)}")
            try:
                if client.get(ready_url).status_code < 500:
                    return proc.pid
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                stop_detached(pidfile)
                raise RuntimeError(f"{argv[0]}: {ready_url} not ready in {timeout_s:g}s; {log}:\n{_tail(log)}")
            time.sleep(0.1)


def stop_detached(pidfile: Path, grace_s: float = 10.0) -> bool:
    """Stop the process group recorded in `pidfile` (SIGTERM, SIGKILL after `grace_s`) and remove the file.

    Only while the pid still runs the recorded command line (a pid reused by another program is left alone).
    True when a process was stopped.
    """
    try:
        record = json.loads(pidfile.read_text())
        pid, argv = int(record["pid"]), [str(a) for a in record["argv"]]
    except FileNotFoundError:
        return False
    except (ValueError, KeyError, TypeError):
        pidfile.unlink(missing_ok=True)
        return False
    stopped = False
    if _cmdline(pid) == argv:
        stopped = True
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    return stopped


def start_local(state: Path, *, prometheus_port: int, blackbox_port: int, probe_url: str) -> str:
    """The blackbox exporter and Prometheus, detached, over a fresh `state`/prometheus; returns Prometheus's URL.

    Pid files `state`/blackbox.pid and `state`/prometheus.pid (stop_local stops them); an earlier pair is stopped
    first, and its config and data are removed.
    """
    stop_local(state)
    folder = state / "prometheus"
    shutil.rmtree(folder, ignore_errors=True)
    write_config(folder, prometheus_port=prometheus_port, blackbox_port=blackbox_port, probe_url=probe_url)
    start_detached(blackbox_argv(folder, blackbox_port), state / "blackbox.pid", folder / "blackbox.log",
                   f"http://127.0.0.1:{blackbox_port}/metrics")
    url = f"http://127.0.0.1:{prometheus_port}"
    try:
        start_detached(prometheus_argv(folder, prometheus_port), state / "prometheus.pid", folder / "prometheus.log",
                       f"{url}/-/ready")
    except RuntimeError:
        stop_local(state)
        raise
    return url


def stop_local(state: Path) -> list[str]:
    """Stop what start_local started; the names of those that were running."""
    return [name for name in ("prometheus", "blackbox") if stop_detached(state / f"{name}.pid")]


def _cmdline(pid: int) -> list[str]:
    _reap(pid)
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def _alive(pid: int) -> bool:
    """Running (a zombie whose parent is not this process counts as gone: its parent may never reap it)."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _reap(pid: int) -> None:
    """Collect `pid` when it is an exited child of this process (a zombie still answers signal 0)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _tail(log: Path, chars: int = 2000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
