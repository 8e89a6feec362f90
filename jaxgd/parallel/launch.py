"""Runs one command as N local processes of a ``jax.distributed`` job, for testing multi-host runs on one machine.

    python -m jaxgd.parallel.launch -n 2 -- jaxgd train --distributed --out runs/two
    python -m jaxgd.parallel.launch -n 2 --cpu-devices 1 -- python experiments/memorization.py --distributed ...

Each process gets ``JAXGD_COORDINATOR`` (127.0.0.1 and a free port), ``JAXGD_NUM_PROCESSES`` and
``JAXGD_PROCESS_ID``, which ``--distributed`` (:func:`jaxgd.parallel.distributed.initialize`) reads; its
output is forwarded line by line with a ``[i]`` prefix. If one process dies, the launcher stops
the others at once with a line naming the dead process — JAX's own heartbeat would end a
survivor only after about 100 s, with the runtime's message — and exits with its code.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

#: Seconds a process gets to stop after SIGTERM before it is killed.
GRACE_SECONDS = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _forward(stream, prefix: str, out) -> None:
    for line in iter(stream.readline, ""):
        out.write(f"{prefix}{line}")
        out.flush()
    stream.close()


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def launch(command: list[str], processes: int, cpu_devices: int | None = None, port: int | None = None) -> int:
    """Runs ``command`` as ``processes`` processes of one job; returns the job's exit code."""
    port = port or free_port()
    procs, threads = [], []
    for i in range(processes):
        env = dict(os.environ, JAXGD_COORDINATOR=f"127.0.0.1:{port}", JAXGD_NUM_PROCESSES=str(processes),
                   JAXGD_PROCESS_ID=str(i), PYTHONUNBUFFERED="1")
        if cpu_devices is not None:
            env["JAXGD_CPU_DEVICES"] = str(cpu_devices)
        p = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        procs.append(p)
        for stream, out in ((p.stdout, sys.stdout), (p.stderr, sys.stderr)):
            t = threading.Thread(target=_forward, args=(stream, f"[{i}] ", out), daemon=True)
            t.start()
            threads.append(t)
    code = 0
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, code = failed[0]
                running = [j for j, c in enumerate(codes) if c is None]
                print(f"jaxgd.parallel.launch: process {i} {_describe(code)}; stopping the other processes "
                      f"({', '.join(map(str, running)) or 'none left'})", file=sys.stderr, flush=True)
                _stop([procs[j] for j in running])
                break
            if all(c == 0 for c in codes):
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        _stop(procs)
        code = 130
    for t in threads:
        t.join(timeout=2)
    return 128 - code if code < 0 else code


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.time() + GRACE_SECONDS
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxgd.parallel.launch", description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--processes", type=int, required=True, help="processes to start")
    parser.add_argument("--cpu-devices", type=int, default=None, help="CPU devices per process (JAXGD_CPU_DEVICES)")
    parser.add_argument("--port", type=int, default=None, help="the coordinator's port (default: a free one)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command each process runs")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or args.processes < 1:
        parser.error("give a positive -n and a command after --")
    return launch(command, args.processes, args.cpu_devices, args.port)


if __name__ == "__main__":
    sys.exit(main())
