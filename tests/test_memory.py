"""The machine's available memory, as every size check reads it."""

from __future__ import annotations

import os

from tricklab.memory import host_available_memory


def test_available_memory_is_at_most_the_physical_memory() -> None:
    memory = host_available_memory()
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert memory is not None and 1 << 20 < memory <= physical
