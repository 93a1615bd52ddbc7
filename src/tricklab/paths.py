"""Where tricklab keeps what it can make again: downloads, decoded images, the registry snapshot."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Return the cache folder, `$TRICKLAB_CACHE` or `~/.cache/tricklab`."""
    return Path(os.environ.get("TRICKLAB_CACHE") or "~/.cache/tricklab").expanduser()


__all__ = ["cache_dir"]
