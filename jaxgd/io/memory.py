"""The memory this machine offers, read before anything large is allocated."""
from __future__ import annotations


def host_available_bytes() -> int | None:
    """The host's available memory (``MemAvailable`` of ``/proc/meminfo``), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
