"""One export, one listener: several exports side by side are several listeners named after their
files, the one-folder-per-listener layout and --user are kept, and the split is noted in the
manifest and prep's summary (synthetic exports written in tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from test_archives import make_zip
from test_readers import HISTORY, extended_rows, run, write_json

from toolkit.listeners import assign
from toolkit.prep import PrepResult
from toolkit.readers import SourceFile, expand

MEMBER = f"{HISTORY}/Streaming_History_Audio_2024.json"


def export_zip(path: Path, year: int = 2024) -> Path:
    return make_zip(path, {MEMBER: json.dumps(extended_rows(year)).encode(), f"{HISTORY}/Userdata.json": b"{}"})


def listeners_of(tmp_path: Path, name: str = "t") -> dict[str, set[int]]:
    """listener -> the years of their plays, read back from events.parquet."""
    ev = pl.read_parquet(tmp_path / "ws" / "datasets" / name / "events.parquet")
    return {u: set(g["ts"].dt.year()) for (u,), g in ev.group_by("user_id")}


def test_two_archives_in_one_folder_are_two_listeners(tmp_path):
    downloads = tmp_path / "Downloads"
    export_zip(downloads / "my_spotify_data.zip", 2023)
    export_zip(downloads / "my_spotify_data (1).zip", 2024)
    prepared = prep_many([downloads], tmp_path)
    m = prepared.manifest
    assert m.users == 2 and m.rows_in == 48
    # each listener's plays are their own export's: the two histories do not interleave
    assert listeners_of(tmp_path) == {"my_spotify_data": {2023}, "my_spotify_data (1)": {2024}}
    reading = m.reading
    assert {r["listener"]: Path(r["export"]).name for r in reading["listeners"]} == {
        "my_spotify_data": "my_spotify_data.zip", "my_spotify_data (1)": "my_spotify_data (1).zip"}
    [note] = reading["notes"]
    assert "2 exports where one listener was expected (Downloads)" in note and "--user" in note
    assert note in prepared.notes


def test_archives_named_on_the_command_line_are_two_listeners(tmp_path):
    a = export_zip(tmp_path / "in" / "alice.zip", 2023)
    b = export_zip(tmp_path / "in" / "bob.zip", 2024)
    m = prep_many([a, b], tmp_path).manifest
    assert m.users == 2 and listeners_of(tmp_path) == {"alice": {2023}, "bob": {2024}}


def prep_many(paths: list[Path], tmp_path: Path, **options) -> PrepResult:
    from toolkit.artifacts import Workspace
    from toolkit.config import PrepConfig
    from toolkit.prep import prep

    return prep(paths, Workspace.at(tmp_path / "ws"), PrepConfig(name="t", **options))


def test_one_archive_keeps_its_folder_as_listener(tmp_path):
    m = run(export_zip(tmp_path / "alice" / "my_spotify_data.zip"), tmp_path)
    assert listeners_of(tmp_path) == {"alice": {2024}}
    assert m.reading == {"listeners": [], "feedback_files": [], "notes": []}


def test_loose_files_of_one_export_stay_one_listener(tmp_path):
    export = tmp_path / "alice"
    write_json(export / "Streaming_History_Audio_2023.json", extended_rows(2023))
    write_json(export / "Streaming_History_Audio_2024.json", extended_rows(2024))
    m = run(export, tmp_path)
    assert listeners_of(tmp_path) == {"alice": {2023, 2024}} and m.reading["notes"] == []


def test_folder_per_listener_layout_is_kept(tmp_path):
    exports = tmp_path / "exports"
    export_zip(exports / "alice" / "a.zip", 2023)
    export_zip(exports / "alice" / "b.zip", 2024)  # two requests of one person, in their folder
    export_zip(exports / "bob" / "my_spotify_data.zip", 2025)
    m = run(exports, tmp_path)
    assert listeners_of(tmp_path) == {"alice": {2023, 2024}, "bob": {2025}}
    assert m.reading["notes"] == []


def test_user_option_reads_every_export_as_one_listener(tmp_path):
    downloads = tmp_path / "Downloads"
    export_zip(downloads / "my_spotify_data.zip", 2023)
    export_zip(downloads / "my_spotify_data (1).zip", 2024)
    m = run(downloads, tmp_path, user="me")
    assert listeners_of(tmp_path) == {"me": {2023, 2024}} and m.reading["notes"] == []


def test_symlinked_folder_of_exports_is_followed_and_split(tmp_path):
    real = tmp_path / "elsewhere" / "family"
    export_zip(real / "alice.zip", 2023)
    export_zip(real / "bob.zip", 2024)
    (real / "loop").symlink_to(real.parent, target_is_directory=True)  # the walk must end
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "family").symlink_to(real, target_is_directory=True)
    m = run(inputs, tmp_path)
    assert m.files == 2
    assert listeners_of(tmp_path) == {"alice": {2023}, "bob": {2024}}


def test_loose_folder_beside_an_archive_keeps_the_folder_name(tmp_path):
    downloads = tmp_path / "Downloads"
    write_json(downloads / "Streaming_History_Audio_2023.json", extended_rows(2023))
    export_zip(downloads / "sister.zip", 2024)
    run(downloads, tmp_path)
    assert listeners_of(tmp_path) == {"Downloads": {2023}, "sister": {2024}}


def test_names_are_unique_and_deterministic(tmp_path):
    """A name already taken gets ' (2)'; the same input always gives the same names."""
    def f(path: str, user: str, archive: str | None = None) -> SourceFile:
        return SourceFile(Path(path), user, path, Path(archive) if archive else None)

    files = [f("/u/x/a.json", "dl", "/p/dl/x.zip"), f("/u/y/a.json", "dl", "/q/dl/x.zip"),
             f("/u/z/a.json", "x", "/r/x/only.zip")]
    named, pairs, notes = assign(files, "spotify-extended")
    assert [s.user for s in named] == ["x (2)", "x (3)", "x"]  # 'x' is the third file's own listener
    assert pairs == (("x (2)", "/p/dl/x.zip"), ("x (3)", "/q/dl/x.zip"))
    assert assign(files, "spotify-extended") == (named, pairs, notes)


def test_other_formats_keep_their_user_column(tmp_path):
    """Formats whose rows name their user are not touched."""
    files = [SourceFile(Path("/a/one.csv"), "a", "one.csv"), SourceFile(Path("/a/two.csv"), "a", "two.csv")]
    from toolkit.readers import listeners_of as readers_listeners

    assert readers_listeners(files, [], "deezer") == (files, [], (), ())


def test_expand_marks_declared_listeners(tmp_path):
    exports = tmp_path / "exports"
    export_zip(exports / "alice" / "a.zip")
    export_zip(exports / "bob" / "b.zip")
    found = expand([exports], tmp_path / "unzipped", None)
    assert {(f.user, f.declared, f.archive.name) for f in found} == {("alice", True, "a.zip"), ("bob", True, "b.zip")}


def test_prep_summary_prints_the_note(tmp_path):
    from typer.testing import CliRunner

    from toolkit.cli import app

    downloads = tmp_path / "Downloads"
    export_zip(downloads / "my_spotify_data.zip", 2023)
    export_zip(downloads / "my_spotify_data (1).zip", 2024)
    result = CliRunner().invoke(app, ["prep", str(downloads), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "note: 2 exports where one listener was expected (Downloads): read as 2 listeners" in text
    assert "(my_spotify_data (1), my_spotify_data)" in text  # in reading order
