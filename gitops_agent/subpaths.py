"""subPath mounts of named Podman volumes (a claim's, a claim template's, an emptyDir on disk): the pure parts.

Podman 4.3 mounts a named volume only whole (no subpath mount option). A subPath of one becomes a bind mount of
`<the volume's Mountpoint>/<subPath>`: `podman.Node` reads the Mountpoint, then makes the directory when it is
missing through a short-lived container that mounts the whole volume at `HELPER_ROOT` (Podman's archive API: it
works on an ssh:// node too), as the kubelet does, with the mode of the volume's top directory. Before it binds
the path it checks, through that container, that each directory on the way is there under its own name (Podman
resolves a path inside the volume and names an archive after what it found: a symbolic link to another name is
caught); the manifests refuse a writable mount of the whole volume or of a directory above a subPath next to it,
so that no container can put a link on the way (the bind source is resolved on the node, where a link would lead
out of the volume). Here: the bind source, the tar that makes directories, the check of each directory, and a live
bind read back as (volume, subPath). Must not talk to Podman.
"""

from __future__ import annotations

import io
import posixpath
import re
import tarfile
from dataclasses import dataclass

HELPER_ROOT = "/volume"  # where the short-lived container mounts the whole volume
LOCAL_DRIVER = "local"

# The local driver keeps a volume's data at <volume path>/<name>/_data (Podman 4.3, whatever the volume path)
_LOCAL_DATA = re.compile(r"/(?P<volume>[^/]+)/_data/(?P<sub>[^/].*)$")


@dataclass(frozen=True)
class BindSource:
    """Where a subPath of a volume is on the node: `path` inside the volume's Mountpoint, a directory (made when
    missing) or a file that was there."""

    path: str
    directory: bool = True


def components(sub_path: str) -> tuple[str, ...]:
    """The directories from the volume's top down to `sub_path` ("a/b" → "a", "a/b"); the path is normalised
    and relative (the manifests checked it: no '..', not absolute)."""
    parts = [p for p in sub_path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"subPath {sub_path!r} is not a relative path inside the volume")
    return tuple("/".join(parts[:i]) for i in range(1, len(parts) + 1))


def bind_source(mountpoint: str, sub_path: str) -> str:
    """The node path bound for `sub_path` of a volume whose Mountpoint is `mountpoint` (always inside it)."""
    return posixpath.join(mountpoint.rstrip("/"), components(sub_path)[-1])


def directories_tar(paths: tuple[str, ...], mode: int, gid: int = 0) -> bytes:
    """A tar archive of directories `paths` (relative, parents first; "." the target directory itself), owner root,
    group `gid`, with `mode`: a missing subPath as the kubelet makes it (the mode of the volume's top directory), an
    emptyDir's `mode`, fsGroup's group (Podman's archive upload keeps the entry's owner with copyUIDGID=false)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in paths:
            entry = tarfile.TarInfo(path)
            entry.type, entry.mode, entry.uid, entry.gid = tarfile.DIRTYPE, mode, 0, gid
            tar.addfile(entry)
        end = tar.offset
    # The entries and the two zero blocks that end an archive, without tarfile's padding to a 10 KiB record:
    # Podman 4.3's copier stops reading at the end marker, and the padding still on its way then fails the upload
    # with "passing bulk input to subprocess: write |1: broken pipe" (2 to 3 uploads in 150 to 300 with the
    # padding, measured on 4.3.1; none in 900 without it)
    return buf.getvalue()[:end] + bytes(2 * tarfile.BLOCKSIZE)


def first_entry(block: bytes) -> tarfile.TarInfo:
    """The first entry of a tar stream, from its first 512-byte header (ValueError if it is none)."""
    try:
        return tarfile.TarInfo.frombuf(block[:tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError as e:
        raise ValueError(f"not a tar archive ({e})") from e


def entry_name(entry: tarfile.TarInfo) -> str:
    """An archive entry's name without "./" before it or "/" after it."""
    return entry.name.removeprefix("./").rstrip("/")


def volume_bind(source: str) -> tuple[str, str] | None:
    """A live bind mount's source read back as (volume, subPath) when it is a directory of a local volume's data;
    None for any other path (a hostPath)."""
    found = _LOCAL_DATA.search(source)
    return (found.group("volume"), found.group("sub")) if found else None


def refusal(entry: tarfile.TarInfo, path: str, last: bool) -> str:
    """Why directory `path` of a subPath (`last`: the subPath itself) cannot be bound, from the first entry of its
    archive (Podman names it after what it resolved `path` to); "" when it can: a directory under its own name, or
    a file for the subPath itself."""
    found = entry_name(entry)
    if found != posixpath.basename(path):
        return f"it is a symbolic link (to {found or 'the top of the volume'!r})"
    if entry.isdir() or (last and entry.isfile()):
        return ""
    return "it is neither a directory nor a file" if last else "it is not a directory"
