"""Root for the file plumbing only: the jobs themselves run as the images' unprivileged user."""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
from pathlib import Path

from ..errors import UsageError

JOB_UID = JOB_GID = 10001  # the images' user (contract.IMAGE_USER)
PR_SET_NO_NEW_PRIVS = 38  # linux/prctl.h


def is_root() -> bool:
    return os.geteuid() == 0


def drop_privileges() -> None:
    """Become uid/gid 10001 for good, with no supplementary groups, no capabilities (they go with
    uid 0) and no way to regain any (no_new_privs)."""
    try:
        os.setgroups([])
        os.setgid(JOB_GID)
        os.setuid(JOB_UID)
    except PermissionError:
        raise UsageError(
            f"started as root without the capabilities to drop to uid {JOB_UID}: "
            f"run the image with --user {JOB_UID}:{JOB_GID} (compose, the launcher and the stack file do)"
        ) from None
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def readable_by_others(folder: Path) -> bool:
    """Whether uid 10001 can reach and read the whole tree without being its owner or root."""
    if any(not parent.stat().st_mode & stat.S_IXOTH for parent in folder.parents):
        return False
    for path in (folder, *folder.rglob("*")):
        mode = path.lstat().st_mode
        needed = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
        if mode & needed != needed:
            return False
    return True


def copy_for_job(source: Path, target: Path) -> Path:
    """A copy of `source` that belongs to the job's user (root reads it; the job never is root)."""
    shutil.copytree(source, target, symlinks=False)
    give(target, JOB_UID, JOB_GID)
    return target


def give(folder: Path, uid: int, gid: int) -> None:
    """chown -R, without following links."""
    os.chown(folder, uid, gid, follow_symlinks=False)
    for path in folder.rglob("*"):
        os.chown(path, uid, gid, follow_symlinks=False)
