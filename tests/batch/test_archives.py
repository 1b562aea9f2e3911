"""``ultramn.data.archives``: safe listing/extraction of ZIP, TAR and DICOMDIR (real archives in tmp)."""

from __future__ import annotations

import io
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from tests.batch.archives import ClipSet, malicious, png_bytes, zip_many, zip_with
from tests.data.test_decoders import write_dicom_cine
from ultramn.batch.discover import discover
from ultramn.data.archives import (
    ArchiveError,
    ArchiveLimitError,
    ArchiveLimits,
    UnsafeArchiveError,
    archive_kind,
    dicomdir_files,
    is_npz,
    list_members,
    safe_extract,
    safe_name,
)

EXPECTED = {
    "traversal": (UnsafeArchiveError, "path traversal"),
    "traversal_nested": (UnsafeArchiveError, "path traversal"),
    "absolute": (UnsafeArchiveError, "absolute path"),
    "windows_absolute": (UnsafeArchiveError, "absolute path"),
    "zip_symlink_out": (UnsafeArchiveError, "points outside"),
    "tar_symlink_out": (UnsafeArchiveError, "points outside"),
    "tar_hardlink_out": (UnsafeArchiveError, "points outside"),
    "zip_bomb": (ArchiveLimitError, "zip bomb"),
    "tar_bomb": (ArchiveLimitError, "bomb"),
    "too_many": (ArchiveLimitError, "more than 10000 members"),
}


@pytest.fixture(scope="module")
def evil(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return malicious(tmp_path_factory.mktemp("evil"))


def test_every_hostile_archive_is_refused_before_anything_is_written(evil: dict[str, Path], tmp_path: Path) -> None:
    assert set(evil) == set(EXPECTED)
    for what, path in evil.items():
        error, text = EXPECTED[what]
        with pytest.raises(error, match=text):
            list_members(path)
        dest = tmp_path / what
        with pytest.raises(error):
            safe_extract(path, dest)
        assert not any(p.is_file() for p in dest.rglob("*")), f"{what}: files were written"
    assert not (tmp_path / "evil.png").exists() and not (tmp_path.parent / "evil.png").exists()


def test_safe_names() -> None:
    assert safe_name("a/./b//c.png") == "a/b/c.png"
    assert safe_name("a\\b.png") == "a/b.png"
    for bad in ("../x", "/x", "a/../../x", "C:/x", "x\x00y", "", "./"):
        with pytest.raises(UnsafeArchiveError):
            safe_name(bad)


def test_extracts_a_good_archive_and_links_inside_are_not_followed(clip_set: ClipSet, tmp_path: Path) -> None:
    members = {m.name for m in list_members(clip_set.archive)}
    assert members == {*clip_set.clips, "notes.txt"}
    written = safe_extract(clip_set.archive, tmp_path / "x")
    assert {p.relative_to(tmp_path / "x").as_posix() for p in written} == members
    tar_written = safe_extract(clip_set.tar, tmp_path / "t")
    assert {p.relative_to(tmp_path / "t").as_posix() for p in tar_written} == members
    assert (tmp_path / "t" / "exam1" / "clip_b.npy").read_bytes() == (tmp_path / "x" / "exam1" / "clip_b.npy").read_bytes()


def test_limits_are_configurable(tmp_path: Path) -> None:
    many = zip_many(tmp_path / "m.zip", 6)
    assert len(list_members(many, ArchiveLimits(max_members=6))) == 6
    with pytest.raises(ArchiveLimitError, match="more than 5 members"):
        list_members(many, ArchiveLimits(max_members=5))
    big = zip_with(tmp_path / "b.zip", {"a.png": png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))})
    with pytest.raises(ArchiveLimitError, match="uncompressed"):
        list_members(big, ArchiveLimits(max_member_bytes=100))
    with pytest.raises(ArchiveLimitError, match="in all"):
        list_members(big, ArchiveLimits(max_total_bytes=100))


def test_unreadable_archives(tmp_path: Path) -> None:
    trunc = tmp_path / "t.zip"
    good = zip_with(tmp_path / "g.zip", {"a.png": b"x" * 5000})
    trunc.write_bytes(good.read_bytes()[:-30])
    with pytest.raises(ArchiveError):
        safe_extract(trunc, tmp_path / "out")
    note = tmp_path / "note.txt"
    note.write_text("hello")
    assert archive_kind(note) is None
    with pytest.raises(ArchiveError, match="not a ZIP or TAR"):
        list_members(note)


def _dicom_set(folder: Path, n: int = 2) -> Path:
    fs = FileSet()
    for i in range(n):
        path = write_dicom_cine(folder.parent / f"src{i}.dcm", np.full((3, 32, 32), 40 * i, np.uint8))
        ds = pydicom.dcmread(path)
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20250101", "101010", "1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SeriesNumber, ds.InstanceNumber = 1, i + 1
        fs.add(ds)
    fs.write(folder)
    return folder / "DICOMDIR"


def test_dicomdir_references_and_traversal(tmp_path: Path) -> None:
    dicomdir = _dicom_set(tmp_path / "set")
    files = dicomdir_files(dicomdir)
    assert len(files) == 2 and all(f.is_file() and f.is_relative_to((tmp_path / "set").resolve()) for f in files)
    found = discover(dicomdir, tmp_path / "work")
    assert [c.path for c in found.clips] == files
    in_folder = discover(tmp_path / "set", tmp_path / "work")  # a folder holding a DICOMDIR: files not listed twice
    assert sorted(c.path.resolve() for c in in_folder.clips) == sorted(files)
    ds = pydicom.dcmread(dicomdir)
    for record in ds.DirectoryRecordSequence:
        if "ReferencedFileID" in record:
            with warnings.catch_warnings():  # ".." is no valid CS value: that is the point
                warnings.simplefilter("ignore")
                record.ReferencedFileID = ["..", "..", "etc", "passwd"]
            break
    ds.save_as(dicomdir)
    with pytest.raises(UnsafeArchiveError, match="path traversal"):
        dicomdir_files(dicomdir)


def test_a_dicomdir_that_is_no_dicom_file_is_refused_in_plain_words(tmp_path: Path) -> None:
    """pydicom's message ("... Use force=True to force reading.") reached the user as the reason."""
    (tmp_path / "DICOMDIR").write_bytes(b"\x00" * 64 + b"not DICOM at all")
    with pytest.raises(ArchiveError, match=r"^DICOMDIR: not a DICOMDIR \(not a DICOM file: no 'DICM' header\)$") as info:
        dicomdir_files(tmp_path / "DICOMDIR")
    assert "force" not in str(info.value)


def test_discovery_of_an_archive(clip_set: ClipSet, tmp_path: Path) -> None:
    found = discover(clip_set.archive, tmp_path / "work")
    assert [c.name for c in found.clips] == sorted(clip_set.clips)
    assert found.skipped == ["notes.txt"]
    with zipfile.ZipFile(clip_set.archive) as zf:
        assert zf.read("exam1/clip_b.npy") == next(c for c in found.clips if c.name == "exam1/clip_b.npy").path.read_bytes()


def test_a_plain_tar_ending_in_a_zip_or_npz_is_a_tar_and_an_npz_is_one_clip(tmp_path: Path) -> None:
    """zipfile.is_zipfile finds the end record of a ZIP stored last in a TAR: detection must not trust it."""
    import tarfile

    clips = tmp_path / "clips"
    clips.mkdir()
    np.savez(clips / "n8.npz", frames=np.zeros((8, 32, 32), np.uint8))
    zip_with(clips / "frames.zip", {"f0.png": png_bytes(np.zeros((32, 32), np.uint8))})
    np.save(clips / "b.npy", np.zeros((2, 32, 32), np.uint8))
    tar = tmp_path / "exam.tar"
    with tarfile.open(tar, "w") as tf:  # uncompressed: the last member's bytes end the file
        for name in ("b.npy", "frames.zip", "n8.npz"):
            tf.add(clips / name, arcname=name)
    assert archive_kind(tar) == "tar"
    found = discover(tar, tmp_path / "work")
    assert sorted(c.name for c in found.clips) == ["b.npy", "frames.zip", "n8.npz"]
    assert is_npz(clips / "n8.npz") and not is_npz(clips / "frames.zip") and not is_npz(tar)  # an NPZ is one clip
    assert [c.name for c in discover(clips / "n8.npz", tmp_path / "work2").clips] == ["n8.npz"]
    # a ZIP of .npy clips in folders, or of several arrays none called frames, is an archive of clips
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 32, 32), np.uint8))
    zip_with(clips / "exams.zip", {"p1/exam/a.npy": buf.getvalue(), "p2/exam/b.npy": buf.getvalue()})
    zip_with(clips / "flat.zip", {"a.npy": buf.getvalue(), "b.npy": buf.getvalue()})
    np.savez(clips / "meta.npz", frames=np.zeros((2, 32, 32), np.uint8), fps=np.float32(20))
    assert not is_npz(clips / "exams.zip") and not is_npz(clips / "flat.zip") and is_npz(clips / "meta.npz")
    assert sorted(c.name for c in discover(clips / "exams.zip", tmp_path / "work3").clips) == ["p1/exam/a.npy", "p2/exam/b.npy"]
    assert sorted(c.name for c in discover(clips / "flat.zip", tmp_path / "work4").clips) == ["a.npy", "b.npy"]
    assert archive_kind(clips / "frames.zip") == "zip"


def test_a_cut_off_compressed_tar_is_a_damaged_archive_not_a_crash(tmp_path: Path) -> None:
    """The first bytes of a .tar.gz made ``tarfile.is_tarfile`` raise EOFError: a 500 from POST /v1/batches."""
    import tarfile

    note = tmp_path / "note.txt"
    note.write_bytes(bytes(range(256)) * 64)
    full = tmp_path / "exam.tar.gz"
    with tarfile.open(full, "w:gz") as tf:
        tf.add(note, arcname="exam/note.txt")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(full.read_bytes()[:20])
    with pytest.raises(ArchiveError, match=r"cut\.tar\.gz is a damaged or cut-off archive"):
        archive_kind(cut)
    assert archive_kind(full) == "tar"


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_extraction_reports_its_progress_in_bytes(kind: str, tmp_path: Path) -> None:
    import tarfile

    members = {f"exam/c{i}.npy": bytes([i]) * (1000 * (i + 1)) for i in range(4)}  # 1000 + 2000 + 3000 + 4000 bytes
    if kind == "zip":
        archive = zip_with(tmp_path / "exams.zip", members)
    else:
        archive = tmp_path / "exams.tar.gz"
        with tarfile.open(archive, "w:gz") as tf:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    calls: list[tuple[int, int]] = []
    safe_extract(archive, tmp_path / "out", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1000, 10000), (3000, 10000), (6000, 10000), (10000, 10000)]
    seen: list[int] = []
    found = discover(archive, tmp_path / "work", progress=lambda done, total: seen.append(done))
    assert len(found.clips) == 4 and seen == [1000, 3000, 6000, 10000]


def test_checking_a_compressed_tar_reports_how_far_it_has_read_before_extracting(tmp_path: Path) -> None:
    """A .tar.gz is decompressed to its end to check its members; that took a silent while."""
    rng = np.random.default_rng(0)
    archive = tmp_path / "exams.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for i in range(6):
            data = rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()  # incompressible: the .gz is about 6 MiB
            info = tarfile.TarInfo(f"exam/c{i}.npy")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    size = archive.stat().st_size
    events: list[tuple[str, int, int]] = []
    safe_extract(
        archive,
        tmp_path / "out",
        progress=lambda done, total: events.append(("write", done, total)),
        checking=lambda done, total: events.append(("check", done, total)),
    )
    checks = [(done, total) for what, done, total in events if what == "check"]
    first_write = next(i for i, e in enumerate(events) if e[0] == "write")
    assert all(e[0] == "check" for e in events[:first_write]) and all(e[0] == "write" for e in events[first_write:])
    assert {total for _, total in checks} == {size} and checks[-1] == (size, size)
    reads = [done for done, _ in checks]
    assert reads == sorted(reads) and reads[0] < size // 2 and len(set(reads)) >= 4  # it moves, member by member
    assert len(list((tmp_path / "out" / "exam").iterdir())) == 6
    zipped: list[int] = []  # a ZIP's directory lists its members at once: nothing to report
    safe_extract(zip_with(tmp_path / "a.zip", {"a.npy": b"x"}), tmp_path / "zout", checking=lambda d, t: zipped.append(d))
    assert zipped == []


def test_batch_shows_an_extraction_bar_for_an_archive_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Extracting a large archive showed nothing until the clips were counted."""
    from tests.cli import run_ultramn

    archive = zip_with(tmp_path / "exams.zip", {"exam/a.npy": b"x" * 5000})
    nowhere = ["--gateway", "http://127.0.0.1:9", "--api-key", "k"]  # extraction comes first; then the gateway is unreachable
    code, err = run_ultramn(monkeypatch, capsys, "batch", str(archive), "--out", str(tmp_path / "o1"), *nowhere)
    assert code == 1 and "extracting" in err and "5.00k" in err
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.npy").write_bytes(b"x" * 5000)
    code, err = run_ultramn(monkeypatch, capsys, "batch", str(tmp_path / "folder"), "--out", str(tmp_path / "o2"), *nowhere)
    assert code == 1 and "extracting" not in err  # a folder is not extracted
    code, err = run_ultramn(monkeypatch, capsys, "batch", str(archive), "--out", str(tmp_path / "o3"), "--quiet", *nowhere)
    assert "extracting" not in err
    tgz = tmp_path / "exams.tar.gz"  # a compressed TAR is checked to its end first, with a bar of its own
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(tmp_path / "folder" / "a.npy", arcname="exam/a.npy")
    code, err = run_ultramn(monkeypatch, capsys, "batch", str(tgz), "--out", str(tmp_path / "o4"), *nowhere)
    assert code == 1 and "checking archive" in err and "extracting" in err


def test_links_in_an_input_folder_are_named_as_links_not_just_other_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder made of links to clips gave "no clips found in X (2 other files)", with no word of links."""
    from tests.cli import run_ultramn

    real = tmp_path / "real"
    real.mkdir()
    np.save(real / "a.npy", np.zeros((2, 8, 8), np.uint8))
    links = tmp_path / "links"
    links.mkdir()
    (links / "a.npy").symlink_to(real / "a.npy")
    (links / "exam").symlink_to(real, target_is_directory=True)
    found = discover(links, tmp_path / "work")
    assert found.clips == [] and sorted(found.links) == ["a.npy", "exam"] and sorted(found.skipped) == ["a.npy", "exam"]
    code, err = run_ultramn(monkeypatch, capsys, "batch", str(links), "--out", str(tmp_path / "out"), "--quiet")
    assert code == 2 and f"no clips found in {links} (2 other files, 2 of them links (links are not followed))" in err
    (links / "notes.txt").write_text("x")
    assert discover(links, tmp_path / "work").skipped_text() == "3 other files, 2 of them links (links are not followed)"
