"""What the machine gave a benchmark: CPU shares (with steal) and a process tree's CPU time.

On a shared virtual machine the load average does not show how much CPU the host let the
bench have: steal (time the hypervisor ran something else while this machine's CPUs had
work) does. The benches print both.
"""
from __future__ import annotations

import os


def machine_cpu() -> list[int]:
    """The machine's CPU time so far (/proc/stat, all CPUs, in clock ticks): user, nice,
    system, idle, iowait, irq, softirq, steal."""
    with open("/proc/stat") as fh:
        return [int(v) for v in fh.readline().split()[1:9]]


def cpu_shares(before: list[int], after: list[int]) -> dict:
    """Shares of the machine's CPU time between two readings, in percent. Steal is the
    time the hypervisor ran something else while this virtual machine's CPUs had work:
    on a shared host it takes CPU away from the bench in amounts the load average does
    not show."""
    d = [b - a for a, b in zip(before, after)]
    total = sum(d) or 1
    user, nice, system, idle, iowait, irq, softirq, steal = d
    return {"user": 100 * (user + nice) / total, "system": 100 * (system + irq + softirq) / total,
            "idle": 100 * (idle + iowait) / total, "steal": 100 * steal / total}


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds (user + system) the live processes under ROOTS (and the roots) have
    used: gunicorn's workers, PostgreSQL's backends."""
    parents, used = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = int(fields[11]) + int(fields[12])
    chosen = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in chosen and pid not in chosen:
                chosen.add(pid)
                grew = True
    return sum(used.get(pid, 0) for pid in chosen) / os.sysconf("SC_CLK_TCK")
