"""Archives and folders are opened without trusting them: traversal, links, bombs and lying headers."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from scorer.evidence import Availability
from scorer.parsers import ArtifactLimits, ArtifactRejected, iter_dir_files, iter_zip_members, parse_artifacts
from scorer.parsers.limits import MIB, CappedReader

JUNIT = b'<testsuites><testsuite name="s"><testcase classname="c" name="t1"/></testsuite></testsuites>'


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _zero_bomb(expanded: int, declared: int | None = None, name: str = "report.xml") -> bytes:
    """A zip whose single member inflates to ``expanded`` zero bytes; headers may declare less.

    Deflate with a full flush after each chunk resets the compressor, so every 16 MiB of zeros
    compresses to the same bytes: gigabytes are built in milliseconds. The CRC is not computed
    (nothing legitimate reads to the end).
    """
    chunk = 16 * MIB
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = co.compress(bytes(chunk)) + co.flush(zlib.Z_FULL_FLUSH)
    assert expanded % chunk == 0
    data = block * (expanded // chunk) + zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    size = expanded if declared is None else declared
    fname = name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, 0, len(data), size, len(fname), 0)
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, 0, len(data), size, len(fname),
                          0, 0, 0, 0, 0, 0)
    cd_offset = len(local) + len(fname) + len(data)
    cd = central + fname
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(cd), cd_offset, 0)
    return local + fname + data + cd + end


def test_zip_members_are_streamed_with_names_and_sizes() -> None:
    files = list(iter_zip_members(_zip({"a/junit.xml": JUNIT, "b/": b"", "c.txt": b"hi"})))
    assert [(f.name, f.size) for f in files] == [("a/junit.xml", len(JUNIT)), ("c.txt", 2)]
    assert files[0].head(5) == b"<test"
    with files[0].open() as stream:
        assert stream.read() == JUNIT


@pytest.mark.parametrize("name", ["../evil.xml", "ok/../../evil.xml", "/etc/evil.xml", "C:/evil.xml", "..\\evil.xml"])
def test_traversal_and_absolute_names_refuse_the_archive(name: str) -> None:
    data = _zip({"fine.xml": JUNIT, name: JUNIT})
    with pytest.raises(ArtifactRejected, match="refused: member"):
        iter_zip_members(data, origin="test-results.zip")


def test_symlink_member_refuses_the_archive() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        link = zipfile.ZipInfo("junit.xml")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(ArtifactRejected, match="symbolic link"):
        iter_zip_members(buf.getvalue())


def test_too_many_members() -> None:
    data = _zip({f"f{i}.txt": b"x" for i in range(6)})
    with pytest.raises(ArtifactRejected, match="6 members, above the 5 limit"):
        iter_zip_members(data, ArtifactLimits(max_members=5))


def test_zip_bomb_with_honest_header_is_refused_before_inflating() -> None:
    bomb = _zero_bomb(3 * 1024 * MIB)  # 3 GiB of zeros in a few megabytes
    assert len(bomb) < 5 * MIB
    with pytest.raises(ArtifactRejected, match="possible zip bomb"):
        iter_zip_members(bomb, origin="bomb.zip")


def test_zip_bomb_with_lying_header_stops_at_the_declared_size(tmp_path: Path) -> None:
    # headers claim 64 KiB, the data inflates to 2 GiB: zipfile stops at the claim and the CRC
    # check fails, so the file becomes a problem instead of gigabytes in memory
    (tmp_path / "bomb.zip").write_bytes(_zero_bomb(2 * 1024 * MIB, declared=64 * 1024, name="junit.xml"))
    results = parse_artifacts(iter_dir_files(tmp_path))
    assert len(results.problems) == 1 and "bomb.zip:junit.xml" in results.problems[0]
    assert results.tests.availability is Availability.UNAVAILABLE


def test_capped_reader_counts_real_bytes() -> None:
    reader = CappedReader(io.BytesIO(bytes(3 * MIB)), MIB, "member.xml")
    with pytest.raises(ArtifactRejected, match="larger than 1 MiB once decompressed"):
        while reader.read(256 * 1024):
            pass
    assert reader.count > MIB


def test_total_budget_across_members() -> None:
    data = _zip({"a.xml": bytes(700 * 1024), "b.xml": bytes(700 * 1024)})
    with pytest.raises(ArtifactRejected, match="in total"):
        iter_zip_members(data, ArtifactLimits(max_total_bytes=MIB))


def test_archive_size_is_checked_before_opening(tmp_path: Path) -> None:
    path = tmp_path / "big.zip"
    path.write_bytes(_zip({"a.xml": os.urandom(300 * 1024)}))
    with pytest.raises(ArtifactRejected, match="above the 0 MiB limit"):
        iter_zip_members(path, ArtifactLimits(max_archive_bytes=100 * 1024))


def test_folder_with_nested_zip_and_symlink(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_bytes(JUNIT)
    sarif = b'{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": []}]}'
    (tmp_path / "scans.zip").write_bytes(_zip({"out/results.sarif": sarif}))
    secret = tmp_path.parent / f"{tmp_path.name}-secret.xml"
    secret.write_bytes(JUNIT)
    (tmp_path / "link.xml").symlink_to(secret)
    files = list(iter_dir_files(tmp_path))
    labels = sorted(f.label for f in files)
    assert labels == ["junit.xml", "link.xml", "scans.zip:out/results.sarif"]
    results = parse_artifacts(files)
    # the link is refused, and since it might have been a report the evidence is incomplete
    assert results.tests.availability is Availability.INCOMPLETE and results.tests.total == 1
    assert [(r.path, r.kind) for r in results.refused] == [("link.xml", "unknown")]
    assert results.security.availability is Availability.INCOMPLETE and results.security.counts == {}
    assert results.problems == ["link.xml is a symbolic link; links are not followed"]
    assert results.coverage.availability is Availability.UNAVAILABLE  # an unread file might have been coverage


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ArtifactRejected, match="not a folder"):
        iter_dir_files(tmp_path / "missing")
