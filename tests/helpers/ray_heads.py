"""Ray heads started with `ray start` beside the suite's own instance, each in a temp dir of its own,
and stopped by that temp dir (never `ray stop`, which stops every Ray instance on the machine)."""
import os
import signal
import socket
import subprocess
import sys

BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_head(temp_dir: str) -> None:
    """Kill every process of the head started with ``--temp-dir temp_dir`` (not `ray stop`, which
    would stop all Ray instances on the machine)."""
    import psutil

    procs = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if temp_dir in " ".join(p.info["cmdline"] or []):
                procs.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        p.kill()


def start_head(temp_dir: str, num_cpus: int, env: dict | None = None) -> int:
    """Start a head on 127.0.0.1 whose files live in ``temp_dir``; returns its dashboard port."""
    port, dash = free_port(), free_port()
    # every port of its own: the suite's Ray instance already holds the defaults (the dashboard
    # agent's 52365 among them), and a head whose agent cannot bind accepts no jobs
    ports = [f"--{name}={free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                  "metrics-export-port", "runtime-env-agent-port",
                                                  "node-manager-port", "object-manager-port",
                                                  "ray-client-server-port")]
    subprocess.run([os.path.join(BIN, "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    f"--num-cpus={num_cpus}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", *ports,
                    f"--temp-dir={temp_dir}", "--disable-usage-stats"],
                   env=env or {**os.environ, "RAY_DISABLE_USAGE_STATS": "1"}, check=True, capture_output=True,
                   timeout=120)
    return dash
