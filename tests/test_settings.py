"""Each setting declares its role once (config.setting), and the command line, the run id, the report's
group labels and the evaluation protocol are derived from that declaration."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, fields, replace
from typing import get_args

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from toolkit.artifacts import Workspace, read_json, read_manifest, run_dir, write_json
from toolkit.cli import app
from toolkit.config import (
    BUILD, DATA, EXPERIMENT, LABELS_WHEN, NOT_GROUPING, PANELS, ROLES, RUNTIME, ModelConfig, PrepConfig, TrainConfig,
    group_labels, identity, roles,
)
from toolkit.errors import ConfigError
from toolkit.identity import OUTPUT_NEUTRAL, run_id, run_ids_before
from toolkit.prep import prep
from toolkit.train import train

runner = CliRunner()
MANIFEST = {"fingerprint": "f" * 64, "pipeline": "p"}
BUILD_MANIFEST = {**MANIFEST, "run_ids": "build", "build": "b" * 64}


def declared(cls) -> dict[str, str]:
    """Each field's role; a field declared without ``setting`` fails here, naming itself."""
    missing = [f.name for f in fields(cls) if "role" not in f.metadata]
    assert not missing, f"{cls.__name__} fields without a role (declare them with config.setting): {missing}"
    return roles(cls)


def test_every_setting_declares_its_role():
    assert set(declared(TrainConfig).values()) == set(ROLES)
    assert set(declared(PrepConfig).values()) == {BUILD, DATA, RUNTIME}
    for f in fields(TrainConfig):
        if f.metadata["flag"]:
            assert f.metadata["help"] and f.metadata["panel"] in PANELS, f.name
        if f.metadata["labels"] is not None:
            assert f.metadata["role"] == EXPERIMENT and f.metadata["labels"] in LABELS_WHEN, f.name


def test_the_role_check_fails_for_a_field_without_one():
    @dataclass(frozen=True)
    class Loose:
        lr: float = 1e-3

    with pytest.raises(AssertionError, match="without a role.*'lr'"):
        declared(Loose)


def test_train_options_are_the_flagged_fields_with_their_own_defaults_and_choices():
    params = {p.name: p for p in get_command(app).commands["train"].params}
    flagged = {f.name: f for f in fields(TrainConfig) if f.metadata["flag"]}
    assert set(params) == set(flagged) | {"resume", "set_", "devices", "workspace"}
    for name, f in flagged.items():
        p = params[name]
        assert p.opts == [f"--{name.replace('_', '-')}"], name
        assert p.default == f.default and p.help == f.metadata["help"], name
        if f.metadata["choices"]:
            assert get_args(p.type_descriptor.annotation) == f.metadata["choices"], name
    assert params["feedback"].metavar == "MODE[+MODE]"
    assert params["amp"].secondary_opts == []  # a switch, no --no-amp


def test_help_panels_keep_their_order():
    result = runner.invoke(app, ["train", "-h"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    shown = [p for p in PANELS if f"─ {p} " in result.output]
    assert shown == [p for p in PANELS if p not in ("Sessions and skips", "Filters", "Split")]  # prep's own panels
    prep_help = runner.invoke(app, ["prep", "-h"], env={"COLUMNS": "200"}).output
    prep_panels = [p for p in PANELS if f"─ {p} " in prep_help]
    assert prep_panels == ["Input", "Sessions and skips", "Filters", "Split", "Runtime", "Output"]
    at = {opt: result.output.index(f"{opt} ") for opt in ("--dataset", "--resume", "--seed", "--set", "--compile",
                                                            "--devices", "--workspace")}
    assert at["--dataset"] < at["--resume"] and at["--seed"] < at["--set"] < at["--compile"] < at["--devices"]


def test_cli_options_build_the_config_they_name(tmp_path, monkeypatch):
    import typer

    import toolkit.train

    built = []

    def fake_train(ws, cfg, show=None):
        built.append(cfg)
        raise typer.Exit(0)

    monkeypatch.setattr(toolkit.train, "train", fake_train)
    result = runner.invoke(app, ["train", "--workspace", str(tmp_path / "ws"), "--d-model", "8", "--context", "output",
                                 "--feedback", "contrastive+negative-target", "--amp", "--compile", "--device", "cpu",
                                 "--max-steps", "3", "--set", "weight_decay=0.5"])
    assert result.exit_code == 0, result.output
    assert built == [TrainConfig(d_model=8, context="output", feedback="contrastive+negative-target", amp=True,
                                 compile=True, device="cpu", max_steps=3, weight_decay=0.5)]


# ---------------------------------------------------------------------------------------------
# the run id


def test_runtime_knobs_leave_the_run_id_and_other_settings_stay_in_it():
    base = TrainConfig(dataset="d")
    same = [replace(base, device="cpu"), replace(base, device="cuda", compile=True), replace(base, negatives_on="host")]
    for manifest in (MANIFEST, BUILD_MANIFEST):
        assert {run_id(manifest, c) for c in same} == {run_id(manifest, base)}
        assert run_id(manifest, replace(base, amp=True)) != run_id(manifest, base)  # bfloat16: another run
    assert identity(replace(base, device="cpu")) == identity(base)


# ids the toolkit gave these configs before the runtime knobs left the id (computed by that version)
PINNED = [
    (dict(), "sasrec-all-s0-e09b4b4d", "sasrec-all-s0-3ca563ef"),
    (dict(model="markov"), "markov-all-s0-4d2424c8", "markov-all-s0-a115f424"),
    (dict(feedback="contrastive", seed=3, amp=True), "sasrec-contrastive-s3-ba7ae9e2",
     "sasrec-contrastive-s3-aeebe175"),
]
# what --device cpu and --device cuda --compile were named then: found among the earlier ids
PINNED_BEFORE = [
    (dict(device="cpu"), "sasrec-all-s0-4e6bbfea", "sasrec-all-s0-8e580c8d"),
    (dict(device="cuda", compile=True), "sasrec-all-s0-cf95ee3a", "sasrec-all-s0-36ea151b"),
]


@pytest.mark.parametrize("options,by_input,by_build", PINNED)
def test_run_ids_at_the_default_knobs_are_unchanged(options, by_input, by_build):
    cfg = TrainConfig(dataset="d", **options)
    assert (run_id(MANIFEST, cfg), run_id(BUILD_MANIFEST, cfg)) == (by_input, by_build)


@pytest.mark.parametrize("options,by_input,by_build", PINNED_BEFORE)
def test_an_earlier_id_of_a_runtime_knob_is_still_found(options, by_input, by_build):
    for knobs in (options, {}):  # the old run is found whatever the knobs are set to now
        cfg = TrainConfig(dataset="d", **knobs)
        assert by_input in run_ids_before(MANIFEST, cfg) and by_build in run_ids_before(BUILD_MANIFEST, cfg)
        assert run_id(MANIFEST, cfg) not in run_ids_before(MANIFEST, cfg)


def test_a_run_trained_under_its_earlier_id_is_reused(tiny_logs, tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    prep([tiny_logs], ws, PrepConfig(name="tiny", max_len=4))
    manifest = read_manifest(ws.dataset("tiny"))
    cfg = TrainConfig(dataset="tiny", model="markov", device="cpu")
    first = train(ws, cfg)
    assert first.id == run_id(manifest, replace(cfg, device="auto"))  # cpu and auto: one run
    # the same run as an earlier version named it (device=cpu hashed as set)
    (old,) = [i for i in run_ids_before(manifest, cfg) if i.endswith(_old_suffix(manifest, cfg))]
    shutil.move(run_dir(ws, first.id).path, run_dir(ws, old).path)
    write_json(run_dir(ws, old).result, {**read_json(run_dir(ws, old).result), "id": old})
    again = train(ws, replace(cfg, device="auto"))
    assert again.reused and again.id == old


def _old_suffix(manifest, cfg: TrainConfig) -> str:
    """The hash an earlier version gave ``cfg``: its identity with the runtime knobs as set."""
    import hashlib

    manifest = manifest.to_json()

    old = {**identity(cfg), "device": cfg.device, "compile": cfg.compile}
    key = json.dumps({"data": manifest["fingerprint"], "pipeline": manifest.get("pipeline"), "cfg": old,
                      **({"build": manifest["build"]} if manifest.get("run_ids") == "build" else {})}, sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:8]


def test_prep_options_that_leave_the_build_are_the_non_build_roles():
    assert set(OUTPUT_NEUTRAL) == {"name", "memory_limit", "threads", "format", "memory"}


# ---------------------------------------------------------------------------------------------
# report groups and defaults declared once


CONFIGS = [TrainConfig(model="sasrec", feedback="contrastive+negative-target"), TrainConfig(model="bert4rec"),
           TrainConfig(model="repeat"), TrainConfig(model="pop")]


def test_every_setting_that_separates_groups_labels_them():
    """A group is the runs equal in every setting but NOT_GROUPING; each such setting (but model and
    feedback, which name the group) must label some runs, or two groups differing in it share a name."""
    separating = {f.name for f in fields(TrainConfig)} - NOT_GROUPING - {"model", "feedback"}
    labelled = set().union(*(group_labels(c) for c in CONFIGS))
    assert labelled == separating
    assert {"skip_negatives", "lr_schedule", "amp", "exclude_played", "grad_clip", "loss_memory_mb"} <= labelled
    assert group_labels(TrainConfig(model="pop")) == []
    assert group_labels(TrainConfig(model="repeat")) == ["history", "successors", "window"]
    assert "alpha" not in group_labels(TrainConfig()) and "mask_prob" not in group_labels(TrainConfig())


def test_mask_prob_has_one_default():
    assert ModelConfig(n_items=3).mask_prob == TrainConfig().mask_prob == 0.2


# ---------------------------------------------------------------------------------------------
# the evaluation protocol: recorded by the run, applied by the report


def test_the_report_applies_the_runs_recorded_protocol():
    from toolkit.report import Protocol

    excl, incl = TrainConfig(exclude_played=True), TrainConfig()
    assert Protocol().for_runs([excl, excl]).exclude_played is True
    assert Protocol().for_runs([incl]).exclude_played is False
    assert Protocol(exclude_played=False).for_runs([excl]).exclude_played is False  # given: for every run
    with pytest.raises(ConfigError, match="validated with different protocols.*r1.*--include-played"):
        Protocol().for_runs([excl, incl], ["r1", "r2"])
    assert excl.validation.exclude_played and excl.validation.split == "valid"


def test_cli_report_reads_exclude_played_from_the_runs(tiny_logs, tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    prep([tiny_logs], ws, PrepConfig(name="tiny", max_len=4))
    for model in ("pop", "markov"):
        train(ws, TrainConfig(dataset="tiny", model=model, exclude_played=True))
    res = runner.invoke(app, ["report", "--workspace", str(ws.root), "--bootstrap", "100", "--json"])
    assert res.exit_code == 0, res.output
    protocol = json.loads(res.stdout)["protocol"]
    assert protocol["exclude_played"] is True and "validated otherwise" not in protocol["note"]
    res = runner.invoke(app, ["report", "--workspace", str(ws.root), "--bootstrap", "100", "--json",
                              "--include-played"])
    assert res.exit_code == 0, res.output
    protocol = json.loads(res.stdout)["protocol"]
    assert protocol["exclude_played"] is False and "2 of the runs were validated otherwise" in protocol["note"]
    train(ws, TrainConfig(dataset="tiny", model="sknn"))  # validated with played tracks kept
    res = runner.invoke(app, ["report", "--workspace", str(ws.root), "--bootstrap", "100"])
    assert res.exit_code == 1 and "different protocols" in res.output and "Traceback" not in res.output
    assert read_json(run_dir(ws, train(ws, TrainConfig(dataset="tiny", model="pop", exclude_played=True)).id)
                     .config)["train"]["exclude_played"] is True


def test_study_gives_the_baselines_the_protocol_and_nothing_else():
    from toolkit.study import StudyConfig, cells

    runs = cells(StudyConfig(overrides={"exclude_played": True, "epochs": 1}), "d")
    assert all(c.exclude_played for c in runs)
    assert {c.epochs for c in runs if c.model == "pop"} == {TrainConfig().epochs}
    # windows after the successors: the repeat rule that reads the successors reads them too
    runs = cells(StudyConfig(overrides={"window": 2}), "d")
    assert {(c.successors, c.window) for c in runs if c.model == "repeat"} == {(0, 0), (10, 2)}
    assert all(c.window == 2 for c in runs if c.model == "sasrec" and c.repeat_head)
    assert all(c.window == 0 for c in runs if c.model in ("pop", "markov", "sknn"))


@pytest.mark.parametrize("grid", ["core", "paper", "full"])
def test_under_frozen_track_vectors_the_study_gives_its_skip_terms_a_context_that_trains(grid):
    from toolkit.study import GRIDS, StudyConfig, labelled_cells, left_out

    cfg = StudyConfig(grid=grid, seeds=1, overrides={"freeze_items": True})
    runs = labelled_cells(cfg, "d")
    aware = [(label, c) for label, c in runs if "contrastive" in c.feedback]
    assert aware and all(c.context == "output" and not c.frozen_skip_term for _, c in aware)
    assert all("context=output" in label for label, c in aware)
    gone = left_out(cfg)  # the cells nothing could train are named, not dropped in silence
    cells_in_grid = sum(1 for m, *_ in GRIDS[grid] if m not in ("pop", "markov", "sknn", "repeat"))
    assert len({label.rsplit(", seed", 1)[0] for label, c in runs if c.model not in ("pop", "markov", "sknn", "repeat")}) \
        + len(gone) == cells_in_grid
    if grid == "core":
        assert len(gone) == 1 and "positives-only+contrastive" in gone[0]
    if grid == "paper":  # its e_t cells are left out, its y_i cells train as they are
        assert len(gone) == 2 and all("context=input" in g for g in gone)
    assert left_out(StudyConfig(grid=grid)) == []  # trained track vectors: every cell as the grid has it
    with pytest.raises(ConfigError, match="freeze_items keeps the track vectors"):
        labelled_cells(StudyConfig(grid=grid, overrides={"freeze_items": True, "context": "input"}), "d")


def test_choices_offered_are_the_checked_ones():
    for f in fields(TrainConfig):
        for bad in ("bogus",) if f.metadata["choices"] else ():
            with pytest.raises(ConfigError):
                TrainConfig(**{f.name: bad})
        for ok in f.metadata["choices"]:
            assert getattr(TrainConfig(**{f.name: ok}), f.name) == ok


def test_prep_options_come_from_the_prep_config_fields():
    from toolkit.settings import options

    params = {p.name: p.default for p in options(PrepConfig)}
    # every setting the prep command offers is a field, with the field's default, help and panel
    flagged = {f.name: f for f in fields(PrepConfig) if f.metadata.get("flag")}
    assert set(params) == set(flagged) and {"min_ts", "threads"}.isdisjoint(params)
    for name, opt in params.items():
        want = flagged[name].default
        assert opt.default == (list(want) if isinstance(want, tuple) else want), name
        assert opt.help == flagged[name].metadata["help"] and opt.rich_help_panel == flagged[name].metadata["panel"]
    result = runner.invoke(app, ["prep", "-h"], env={"COLUMNS": "200"})
    assert "--session-gap" in result.output and "--col" in result.output and "-f" in result.output
    assert "--no-collapse-repeats" in result.output  # a prep switch keeps its --no- form
