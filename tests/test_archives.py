"""Zip archives are extracted safely: no member is written outside the extraction folder, bombs
stop at the caps, members appear under their name only when complete, an archive replaced at
the same path is extracted afresh, and every refusal is one line naming archive and member
(crafted archives written in tmp_path)."""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path

import polars as pl
import pytest
from test_cli import assert_clean_error, invoke
from test_readers import extended_rows, run

from toolkit import readers
from toolkit.errors import InputError
from toolkit.readers import archive_dir, expand

MEMBER = "Spotify Extended Streaming History/Streaming_History_Audio_2024.json"


def history(year: int = 2024) -> bytes:
    return json.dumps(extended_rows(year)).encode()


def make_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """An archive holding ``members`` under their names exactly as given (no clean-up of the names)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, compress_type=compression)
    return path


def unzip_dir(tmp_path: Path) -> Path:
    return tmp_path / "ws" / "tmp" / "unzipped"


def one_line_error(exc: pytest.ExceptionInfo, *needles: str) -> str:
    text = str(exc.value)
    assert len(text.splitlines()) == 1, text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def data_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, temporary ones included."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("name", [
    "../../evil.json", "sub/../../../evil.json", "..\\..\\evil.json", "C:\\evil.json", "C:/evil.json", "ABSOLUTE",
])
def test_member_leading_outside_is_refused_and_nothing_is_written(tmp_path, name):
    outside = tmp_path / "outside" / "evil.json"
    name = str(outside) if name == "ABSOLUTE" else name
    archive = make_zip(tmp_path / "in" / "export.zip", {MEMBER: history(), name: b"[]"})
    with pytest.raises(InputError) as exc:
        expand([archive], unzip_dir(tmp_path), None)
    one_line_error(exc, "export.zip!", "evil.json", "extract it yourself and pass the folder")
    # where a naive extraction would have put it, and anywhere else in the test's folders
    target = archive_dir(archive, unzip_dir(tmp_path), "in")
    assert not Path(os.path.normpath(target / name.replace("\\", "/"))).exists()
    assert not outside.exists()
    assert [p for p in tmp_path.parent.glob("*evil*")] == []
    assert [p for p in tmp_path.rglob("*evil*")] == []
    # checked before anything is written: not even the safe member is extracted
    assert data_files(unzip_dir(tmp_path)) == []


def test_zip_slip_through_the_command_line_is_one_line(tmp_path):
    archive = make_zip(tmp_path / "export.zip", {MEMBER: history(), "../../../evil.json": b"[]"})
    result = invoke("prep", archive)
    assert_clean_error(result, "export.zip!../../../evil.json", "extract it yourself and pass the folder")
    assert [p for p in tmp_path.rglob("*evil*")] == []


def test_bomb_stops_at_the_size_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLKIT_MAX_UNZIP_BYTES", str(2**20))
    archive = make_zip(tmp_path / "export.zip", {MEMBER: history(), "bomb.json": bytes(2 * 2**20)})
    with pytest.raises(InputError) as exc:
        expand([archive], unzip_dir(tmp_path), None)
    one_line_error(exc, "export.zip!bomb.json", "TOOLKIT_MAX_UNZIP_BYTES", "extract it yourself")
    assert data_files(unzip_dir(tmp_path)) == []


def test_bomb_stops_at_the_ratio_cap(tmp_path):
    archive = make_zip(tmp_path / "export.zip", {"bomb.json": bytes(2 * 2**20)})  # deflates ~1000:1
    assert zipfile.ZipFile(archive).getinfo("bomb.json").compress_size < 2 * 2**20 / 200
    with pytest.raises(InputError) as exc:
        expand([archive], unzip_dir(tmp_path), None)
    one_line_error(exc, "export.zip!bomb.json", "200:1", "TOOLKIT_MAX_UNZIP_RATIO")
    assert data_files(unzip_dir(tmp_path)) == []


def test_bad_cap_setting_is_a_clear_error(tmp_path, monkeypatch):
    from toolkit.errors import ConfigError

    monkeypatch.setenv("TOOLKIT_MAX_UNZIP_BYTES", "lots")
    archive = make_zip(tmp_path / "export.zip", {MEMBER: history()})
    with pytest.raises(ConfigError, match="TOOLKIT_MAX_UNZIP_BYTES='lots'"):
        expand([archive], unzip_dir(tmp_path), None)


def test_members_are_streamed_not_read_whole(tmp_path, monkeypatch):
    def whole(*_args, **_kwargs):
        raise AssertionError("ZipFile.read holds a whole member in memory")

    monkeypatch.setattr(zipfile.ZipFile, "read", whole)
    monkeypatch.setattr(readers, "UNZIP_CHUNK", 1000)  # many pieces
    data = history()
    archive = make_zip(tmp_path / "export.zip", {MEMBER: data})
    [f] = expand([archive], unzip_dir(tmp_path), None)
    assert f.path.read_bytes() == data and f.shown == f"{archive}!{MEMBER}"


def test_archive_replaced_at_the_same_path_is_extracted_again(tmp_path):
    archive = make_zip(tmp_path / "export.zip", {MEMBER: history(2023)})
    [old] = expand([archive], unzip_dir(tmp_path), None)
    assert old.path.read_bytes() == history(2023)
    make_zip(archive, {MEMBER: history(2025)})  # a newer export, same path, same member name
    [new] = expand([archive], unzip_dir(tmp_path), None)
    assert new.path.read_bytes() == history(2025)
    # and through prep: the plays of the new export are read
    m = run(archive, tmp_path)
    ev = pl.read_parquet(tmp_path / "ws" / "datasets" / "t" / "events.parquet")
    assert m.rows_in == 24 and set(ev["ts"].dt.year()) == {2025}


def test_interrupted_extraction_leaves_no_member_and_is_redone(tmp_path, monkeypatch):
    data = history()
    archive = make_zip(tmp_path / "export.zip", {MEMBER: data})
    real_read = zipfile.ZipExtFile.read
    calls = []

    def read_then_interrupt(self, n=-1):
        calls.append(n)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real_read(self, n)

    with monkeypatch.context() as patch:
        patch.setattr(readers, "UNZIP_CHUNK", 1000)
        patch.setattr(zipfile.ZipExtFile, "read", read_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            expand([archive], unzip_dir(tmp_path), None)
    assert len(calls) == 2
    assert data_files(unzip_dir(tmp_path)) == []  # neither the final name nor the temporary file
    [f] = expand([archive], unzip_dir(tmp_path), None)
    assert f.path.read_bytes() == data


def test_partial_member_left_behind_is_never_reused(tmp_path):
    data = history()
    archive = make_zip(tmp_path / "export.zip", {MEMBER: data})
    target = archive_dir(archive, unzip_dir(tmp_path), tmp_path.name)
    dest = target / MEMBER
    dest.parent.mkdir(parents=True)
    old_temp = dest.parent / f".{dest.name}.killed.tmp"  # a run killed mid-member, long ago
    new_temp = dest.parent / f".{dest.name}.running.tmp"  # perhaps a run extracting right now
    for tmp in (old_temp, new_temp):
        tmp.write_bytes(data[:100])
    os.utime(old_temp, (time.time() - 2 * readers.STALE_TEMP_S,) * 2)
    dest.write_bytes(data[:100])  # a truncated member under the final name (older code, full disk)
    [f] = expand([archive], unzip_dir(tmp_path), None)
    assert f.path == dest and dest.read_bytes() == data
    assert not old_temp.exists() and new_temp.exists()
    [again] = expand([archive], unzip_dir(tmp_path), None)  # a complete member is reused as it is
    assert again.path == dest and dest.read_bytes() == data


def _patch_bytes(path: Path, edit) -> None:
    raw = bytearray(path.read_bytes())
    edit(raw)
    path.write_bytes(bytes(raw))


def test_encrypted_member_is_one_line(tmp_path):
    archive = make_zip(tmp_path / "export.zip", {MEMBER: history()}, zipfile.ZIP_STORED)

    def encrypt_flag(raw: bytearray) -> None:  # zipfile cannot write encrypted members: set the flag bit
        local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
        raw[local + 6] |= 0x1
        raw[central + 8] |= 0x1

    _patch_bytes(archive, encrypt_flag)
    with pytest.raises(RuntimeError, match="encrypted"):  # what zipfile itself says
        zipfile.ZipFile(archive).open(MEMBER)
    with pytest.raises(InputError) as exc:
        expand([archive], unzip_dir(tmp_path), None)
    one_line_error(exc, f"export.zip!{MEMBER}", "encrypted", "extract it yourself")
    assert data_files(unzip_dir(tmp_path)) == []


def test_crc_broken_member_is_one_line(tmp_path):
    data = history()
    archive = make_zip(tmp_path / "export.zip", {MEMBER: data}, zipfile.ZIP_STORED)

    def flip(raw: bytearray) -> None:
        at = raw.find(data) + len(data) // 2
        raw[at] ^= 0xFF

    _patch_bytes(archive, flip)
    with pytest.raises(InputError) as exc:
        expand([archive], unzip_dir(tmp_path), None)
    one_line_error(exc, f"export.zip!{MEMBER}", "damaged", "CRC", "re-download")
    assert data_files(unzip_dir(tmp_path)) == []  # the partial member is removed


def test_user_cannot_steer_the_extraction_folder(tmp_path):
    archive = make_zip(tmp_path / "export.zip", {MEMBER: history()})
    for user in ("../../..", "/etc", "..", "a/../../b"):
        [f] = expand([archive], unzip_dir(tmp_path), user)
        assert f.path.resolve().is_relative_to(unzip_dir(tmp_path).resolve()), (user, f.path)
        assert f.user == user  # the listener id in the data stays as given
    # one folder per sanitised name, each right inside the unzip folder; nothing beside it
    assert {p.name.rsplit("-", 2)[0] for p in unzip_dir(tmp_path).iterdir()} == {"listener", "etc", "a-..-..-b"}
    assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == ["tmp"]
    assert sorted(p.name for p in (tmp_path / "ws" / "tmp").iterdir()) == ["unzipped"]
    m = run(archive, tmp_path, user="../../..")
    ev = pl.read_parquet(tmp_path / "ws" / "datasets" / "t" / "events.parquet")
    assert m.rows_in == 24 and set(ev["user_id"]) == {"../../.."}


def test_symlinked_folder_of_exports_is_followed_and_loops_end(tmp_path):
    real = tmp_path / "elsewhere" / "export"
    real.mkdir(parents=True)
    (real / "Streaming_History_Audio_2024.json").write_bytes(history())
    (real / "loop").symlink_to(real.parent, target_is_directory=True)  # export/loop/export/loop/...
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "listener").symlink_to(real, target_is_directory=True)
    files = expand([inputs], unzip_dir(tmp_path), None)
    assert [f.path.name for f in files] == ["Streaming_History_Audio_2024.json"]
    assert files[0].path == inputs / "listener" / "Streaming_History_Audio_2024.json"
