"""How much memory this machine can still give: the one reading every size check uses."""

from __future__ import annotations

import os

MEMORY_LIMIT_VARIABLE = "TRICKLAB_MEMORY_LIMIT"
"""Environment variable that lowers the memory tricklab assumes is available."""


def host_available_memory() -> int | None:
    """Bytes of memory this machine can still give, or `None` when it cannot tell.

    Linux's `MemAvailable` (free memory plus the cache it can reclaim), else the
    free physical pages `os.sysconf` reports, else the total physical memory.
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            count, size = os.sysconf(pages), os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            continue
        if count > 0 and size > 0:
            return count * size
    return None
