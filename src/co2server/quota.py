"""Per-unit quotas: the bytes and files a unit's folders may hold (CO2_UNIT_MAX_BYTES, CO2_UNIT_MAX_FILES).

Everything below `<data dir>/<hw_id>/` counts (uploads and the folders kept
aside when an SD card was replaced) except `updates/`, which operators write.
A real unit writes about 20 MB and a few hundred files in ten years; the
defaults are far above that, so a quota only stops a unit (or someone with
its key) filling the disk. Counted afresh for each chunk that adds bytes,
under the folder's lock, so what is on disk never passes the cap.
"""

from __future__ import annotations

import os
import stat

from .errors import ApiError


def unit_usage(unit_dir: str) -> tuple[int, int]:
    """(bytes, files) below `unit_dir`, `updates/` left out; symlinks are not followed."""
    total = files = 0
    stack = [unit_dir]
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with entries:
            for entry in entries:
                if folder == unit_dir and entry.name == "updates":
                    continue
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
                else:
                    total += st.st_size
                    files += 1
    return total, files


def check_quota(hw_id: str, unit_dir: str, add_bytes: int, new_file: bool, max_bytes: int, max_files: int) -> None:
    """Refuse (403) a write of `add_bytes` (to a new file if `new_file`) that would pass the unit's caps."""
    used, files = unit_usage(unit_dir)
    if used + add_bytes > max_bytes:
        raise ApiError(
            403,
            "UNIT_QUOTA_BYTES",
            f"unit {hw_id} holds {used} bytes; {add_bytes} more would pass its quota of {max_bytes} (CO2_UNIT_MAX_BYTES)",
        )
    if new_file and files + 1 > max_files:
        raise ApiError(
            403,
            "UNIT_QUOTA_FILES",
            f"unit {hw_id} holds {files} files; a new one would pass its quota of {max_files} (CO2_UNIT_MAX_FILES)",
        )
