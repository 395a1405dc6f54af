"""Step 1 of `manifests.parse`: which files are manifests, within the limits, as text.

`within_limits` keeps the manifest paths (`.yaml`/`.yml`, no dot component) up to `Limits.max_files` and
`Limits.max_total_bytes`; `text_of` refuses a symlink, a file over `Limits.max_file_bytes`, a binary or non-UTF-8
file. Each returns its problems (FILE:LINE). `load_directory` reads a working copy for `validate`: the package's
only I/O. It must not parse YAML or follow symlinks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import Problem, SourceUnavailable, quote_path


@dataclass(frozen=True)
class SourceFile:
    path: str  # repository-relative POSIX path, e.g. "apps/web/deploy.yaml"
    data: bytes
    is_symlink: bool = False
    size: int | None = None  # the real size when `data` is not read at all (too large)

    @property
    def length(self) -> int:
        return self.size if self.size is not None else len(self.data)


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 1 << 20  # 1 MiB per file
    max_total_bytes: int = 32 << 20
    max_files: int = 5000
    max_yaml_nodes: int = 100_000  # per file, aliases expanded; defeats alias bombs


def is_manifest_path(path: str) -> bool:
    """True for `.yaml`/`.yml` files with no path component starting with "."."""
    parts = path.split("/")
    return path.endswith((".yaml", ".yml")) and not any(part.startswith(".") for part in parts)


def load_directory(root: Path) -> list[SourceFile]:
    """The manifest files under `root`, for validating a working copy.

    Dotfiles and dot-directories are skipped. Symlinks are never followed: a
    symlink with a manifest name is returned with `is_symlink=True` and no data,
    so that `parse` rejects it as Git sources do. Raises `SourceUnavailable`
    if the directory cannot be read.
    """

    def fail(error: OSError) -> None:
        raise error

    files = []
    try:
        for directory, subdirs, names in os.walk(root, onerror=fail):
            base = Path(directory)
            symlinked_dirs = [name for name in subdirs if (base / name).is_symlink()]
            subdirs[:] = sorted(name for name in subdirs if not name.startswith(".") and name not in symlinked_dirs)
            for name in sorted(names + symlinked_dirs):
                path = base / name
                relative = path.relative_to(root).as_posix()
                if not is_manifest_path(relative):
                    continue
                if path.is_symlink():
                    files.append(SourceFile(relative, b"", is_symlink=True))
                elif path.is_file():
                    files.append(SourceFile(relative, path.read_bytes()))
    except OSError as error:
        raise SourceUnavailable(f"cannot read {quote_path(str(error.filename or root))}: {error.strerror}") from error
    return sorted(files, key=lambda file: file.path)


def revision_digest(files: list[SourceFile]) -> str:
    digest = hashlib.sha256()
    for file in files:  # sorted by path
        path = file.path.encode()
        digest.update(b"%d:%s%d:" % (len(path), path, len(file.data)))
        digest.update(file.data)
    return f"sha256:{digest.hexdigest()}"


def within_limits(files: Iterable[SourceFile], limits: Limits) -> tuple[list[SourceFile], list[Problem]]:
    """The manifest files (other paths ignored) sorted by path, cut at the first one past `limits.max_files`
    or `limits.max_total_bytes`; a problem for that cut."""
    manifests = sorted((file for file in files if is_manifest_path(file.path)), key=lambda file: file.path)
    total_bytes = 0
    for index, file in enumerate(manifests):
        total_bytes += file.length
        if index >= limits.max_files:
            return manifests[:index], [Problem(file.path, 1, "", "", f"more than {limits.max_files} manifest files, "
                                                                       "the limit")]
        if total_bytes > limits.max_total_bytes:
            message = f"manifest files total more than {limits.max_total_bytes} bytes, the limit"
            return manifests[:index], [Problem(file.path, 1, "", "", message)]
    return manifests, []


def text_of(file: SourceFile, limits: Limits) -> tuple[str | None, list[Problem]]:
    """The file's text, or None and the problem: a symlink, over `limits.max_file_bytes`, binary, not UTF-8."""

    def problem(line: int, message: str) -> tuple[None, list[Problem]]:
        return None, [Problem(file.path, line, "", "", message)]

    if file.is_symlink:
        return problem(1, "symlinks are not followed; commit the file itself")
    if file.length > limits.max_file_bytes:
        return problem(1, f"file is {file.length} bytes; the limit is {limits.max_file_bytes}")
    if b"\0" in file.data:
        return problem(file.data[: file.data.index(b"\0")].count(b"\n") + 1, "binary file (contains NUL bytes)")
    try:
        return file.data.decode("utf-8"), []
    except UnicodeDecodeError as error:
        return problem(file.data[: error.start].count(b"\n") + 1, "file is not UTF-8 text")
