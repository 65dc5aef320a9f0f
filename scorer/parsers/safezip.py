"""Open artifact archives and folders without trusting them: no traversal, no links, no bombs."""

from __future__ import annotations

import io
import logging
import os
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from scorer.parsers.limits import MIB, ArtifactLimits, ArtifactRejected, ByteBudget, CappedReader

log = logging.getLogger(__name__)

ZipSource = bytes | str | os.PathLike[str]


@dataclass(frozen=True)
class ArtifactFile:
    """One file from an artifact: its name, declared size, and a way to open a bounded stream.

    ``open()`` may be called more than once (sniffing reads the head, the parser reads it all).
    A file that could not be unpacked carries ``rejected`` (the reason) and refuses to open.
    """

    name: str  # '/'-separated path inside the archive or folder
    size: int  # declared size; the real size is enforced while reading
    opener: Callable[[], CappedReader] | None = None
    origin: str = ""  # archive or folder the file came from
    rejected: str | None = None
    run: str = ""  # the workflow run (and upload) that made the archive, when known: see retry_scope

    @property
    def label(self) -> str:
        """Name used in problems and provenance: ``origin:name`` or ``name``."""
        return f"{self.origin}:{self.name}" if self.origin else self.name

    def open(self) -> CappedReader:
        """Open a stream that raises ArtifactRejected past the member size cap."""
        if self.rejected is not None or self.opener is None:
            raise ArtifactRejected(self.rejected or "no content")
        return self.opener()

    def head(self, n: int) -> bytes:
        """Return the first ``n`` bytes (fewer if the file is shorter)."""
        with self.open() as stream:
            return stream.read(n)

    @classmethod
    def from_bytes(cls, name: str, data: bytes, limits: ArtifactLimits | None = None, origin: str = "") -> ArtifactFile:
        """Wrap in-memory content (tests, small API responses)."""
        lim = limits or ArtifactLimits()
        return cls(name=name, size=len(data), origin=origin,
                   opener=lambda: CappedReader(io.BytesIO(data), lim.max_member_bytes, name))

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], limits: ArtifactLimits | None = None,
                  name: str | None = None, origin: str = "", budget: ByteBudget | None = None) -> ArtifactFile:
        """Wrap a local file."""
        lim = limits or ArtifactLimits()
        p = Path(path)
        label = name or p.name

        def opener() -> CappedReader:
            return CappedReader(p.open("rb"), lim.max_member_bytes, label, budget)

        return cls(name=label, size=p.stat().st_size, origin=origin, opener=opener)


def _unsafe_name_reason(name: str) -> str | None:
    """Return why a member name is unsafe to honour, or None."""
    if "\x00" in name:
        return "contains a NUL byte"
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return "is an absolute path"
    if ".." in PurePosixPath(normalised).parts:
        return "climbs out of the archive with '..'"
    return None


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return stat.S_ISLNK(mode)


def _open_zip(source: ZipSource | BinaryIO, limits: ArtifactLimits, label: str) -> zipfile.ZipFile:
    if isinstance(source, bytes | bytearray):
        size = len(source)
        handle: BinaryIO | str | os.PathLike[str] = io.BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        size = os.stat(source).st_size
        handle = source
    else:
        source.seek(0, os.SEEK_END)
        size = source.tell()
        source.seek(0)
        handle = source
    if size > limits.max_archive_bytes:
        raise ArtifactRejected(
            f"archive {label} is {size / MIB:.0f} MiB, above the {limits.max_archive_bytes // MIB} MiB limit; "
            "raise ArtifactLimits.max_archive_bytes if it is genuine"
        )
    try:
        return zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ArtifactRejected(f"archive {label} is not a readable zip file ({exc})") from exc


def iter_zip_members(
    data_or_path: ZipSource | BinaryIO,
    limits: ArtifactLimits | None = None,
    origin: str = "",
    budget: ByteBudget | None = None,
) -> Iterator[ArtifactFile]:
    """Yield the regular files of a zip archive after checking the whole directory is safe.

    The archive is refused as a whole (ArtifactRejected, raised by this call, before anything is
    yielded) when it is too large, has too many members, declares a member or a total above the
    caps, or holds a member with an absolute path, a '..' component, a symlink or encryption.
    Actual decompressed bytes are counted again while reading, since headers can lie.
    """
    lim = limits or ArtifactLimits()
    label = origin or "(in memory)"
    zf = _open_zip(data_or_path, lim, label)
    infos = zf.infolist()
    if len(infos) > lim.max_members:
        zf.close()
        raise ArtifactRejected(
            f"archive {label} has {len(infos)} members, above the {lim.max_members} limit"
        )
    declared_total = 0
    files: list[zipfile.ZipInfo] = []
    for info in infos:
        reason = _unsafe_name_reason(info.filename)
        if reason is None and _is_symlink(info):
            reason = "is a symbolic link"
        if reason is None and info.flag_bits & 0x1:
            reason = "is encrypted"
        if reason is not None:
            zf.close()
            log.warning("artifact.zip_rejected", extra={"archive": label, "reason": reason})
            raise ArtifactRejected(f"archive {label} refused: member {info.filename!r} {reason}")
        if info.is_dir():
            continue
        if info.file_size > lim.max_member_bytes:
            zf.close()
            raise ArtifactRejected(
                f"archive {label} refused: member {info.filename!r} declares {info.file_size / MIB:.0f} MiB "
                f"decompressed, above the {lim.max_member_bytes // MIB} MiB limit (possible zip bomb)"
            )
        declared_total += info.file_size
        files.append(info)
    if declared_total > lim.max_total_bytes:
        zf.close()
        raise ArtifactRejected(
            f"archive {label} refused: members declare {declared_total / MIB:.0f} MiB decompressed in total, "
            f"above the {lim.max_total_bytes // MIB} MiB limit (possible zip bomb)"
        )
    shared = budget or ByteBudget(lim.max_total_bytes)
    return _members(zf, files, lim, origin, shared)


def _members(zf: zipfile.ZipFile, files: list[zipfile.ZipInfo], limits: ArtifactLimits, origin: str,
             budget: ByteBudget) -> Iterator[ArtifactFile]:
    # The ZipFile stays open as long as any yielded ArtifactFile refers to it; ZipFile closes itself
    # when collected, so callers may keep the files after the iterator is exhausted.
    for info in files:
        def opener(info: zipfile.ZipInfo = info) -> CappedReader:
            return CappedReader(zf.open(info), limits.max_member_bytes, info.filename, budget)

        yield ArtifactFile(name=info.filename.replace("\\", "/"), size=info.file_size, opener=opener, origin=origin)


def _looks_like_zip(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def iter_dir_files(path: str | os.PathLike[str], limits: ArtifactLimits | None = None) -> Iterator[ArtifactFile]:
    """Yield the files under a local folder, opening zip files found in it (one level deep).

    Symbolic links are not followed; a link, an oversized file or an unreadable zip is yielded as
    a rejected ArtifactFile so the caller can report it. Raises ArtifactRejected when the folder
    holds more than ``max_members`` files or is not a folder.
    """
    lim = limits or ArtifactLimits()
    root = Path(path)
    if not root.is_dir():
        raise ArtifactRejected(f"{root} is not a folder; pass the folder that holds the downloaded artifacts")
    entries: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for fname in sorted(filenames):
            entries.append(Path(dirpath) / fname)
            if len(entries) > lim.max_members:
                raise ArtifactRejected(f"folder {root} holds more than {lim.max_members} files")
        # directory symlinks are listed in dirnames but never walked into; report them
        for dname in dirnames:
            if (Path(dirpath) / dname).is_symlink():
                entries.append(Path(dirpath) / dname)
    return _dir_files(root, entries, lim)


def _dir_files(root: Path, entries: list[Path], limits: ArtifactLimits) -> Iterator[ArtifactFile]:
    budget = ByteBudget(limits.max_total_bytes)
    for entry in entries:
        rel = entry.relative_to(root).as_posix()
        if entry.is_symlink():
            yield ArtifactFile(name=rel, size=0, rejected=f"{rel} is a symbolic link; links are not followed")
            continue
        size = entry.stat().st_size
        if _looks_like_zip(entry) and limits.max_zip_depth > 0:
            try:
                yield from iter_zip_members(entry, limits, origin=rel, budget=budget)
            except ArtifactRejected as exc:
                yield ArtifactFile(name=rel, size=size, rejected=str(exc))
            continue
        if size > limits.max_member_bytes:
            yield ArtifactFile(name=rel, size=size, rejected=(
                f"{rel} is {size / MIB:.0f} MiB, above the {limits.max_member_bytes // MIB} MiB limit"))
            continue
        yield ArtifactFile.from_path(entry, limits, name=rel, budget=budget)
