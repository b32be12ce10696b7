"""The toolkit from Python (notebooks, scripts): ``prep``, ``train``, ``report``, ``recommend`` and ``tune``.

Each function is its command: it takes the command's options as keyword arguments named like the
fields of the stage's config (``PrepConfig``, ``TrainConfig``, ``report.Protocol``; their defaults are
the only defaults, so ``help(toolkit.train)`` lists exactly what ``toolkit train`` does), calls the
same stage function, and returns a frozen record, with polars DataFrames where a table is natural.
``workspace=`` defaults as on the command line (``$TOOLKIT_WORKSPACE``, else ``./toolkit-workspace``);
a Dataset or Run passed in brings its own.  A mistake raises ``toolkit.errors.ToolkitError`` with the
command's one-line message; nothing is printed.  Heavy libraries (torch above all) load on the first
call that needs them, not on ``import toolkit``.  docs/api.md walks through all four.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.config import PrepConfig, TrainConfig, saved_config
from toolkit.errors import ConfigError, InputError

if TYPE_CHECKING:  # annotations only: importing these here would load them with ``import toolkit``
    import polars as pl

    from toolkit.artifacts import Workspace
    from toolkit.manifest import Manifest
    from toolkit.prep import PrepResult
    from toolkit.progress import TrainProgress


# ---------------------------------------------------------------------------------------------
# the records


@dataclass(frozen=True)
class Dataset:
    """A prepared dataset: the summary ``toolkit prep`` prints, the split table, and its manifest."""

    name: str
    workspace: Path
    format: str
    rows_in: int  # input rows
    rows_kept: int  # plays in the dataset
    users: int
    sessions: int
    tracks: int  # catalogue size (item ids 1..tracks)
    skip_share: float
    split_mode: str  # time, listener or last
    rows_dropped: dict  # reason -> rows
    splits: pl.DataFrame = field(repr=False)  # split, sessions, events, rows, skips
    notes: tuple[str, ...] = ()  # what prep would tell you on the command line (a changed name, a rebuild)
    up_to_date: bool = False  # reused as it was: prepared before from the same input and options
    manifest: Manifest | None = field(default=None, repr=False)  # manifest.json as written, as its record

    @property
    def path(self) -> Path:
        return self.workspace / "datasets" / self.name

    def items(self) -> pl.DataFrame:
        """The catalogue: ``item_id, track_key, artist, title, plays, skips, train_plays``."""
        import polars as pl

        return pl.read_parquet(self.path / "items.parquet")

    def events(self) -> pl.DataFrame:
        """Every kept play: ``split, session_idx, position, user_id, item_id, ts, played_ms, is_skip``."""
        import polars as pl

        return pl.read_parquet(self.path / "events.parquet")

    @classmethod
    def from_prep(cls, workspace: Path, prepared: PrepResult) -> Dataset:
        import polars as pl

        m = prepared.manifest
        splits = pl.DataFrame([{"split": name, **counts.to_json()} for name, counts in m.splits.items()])
        return cls(
            name=m.name, workspace=workspace, format=m.format, rows_in=m.rows_in, rows_kept=m.rows_kept,
            users=m.users, sessions=m.sessions, tracks=m.items, skip_share=m.skip_share, split_mode=m.split_mode,
            rows_dropped=dict(m.rows_dropped), splits=splits, notes=prepared.notes, up_to_date=prepared.up_to_date,
            manifest=m,
        )


@dataclass(frozen=True)
class Run:
    """A trained run: its id, settings, best validation metrics and the per-epoch metrics."""

    id: str
    workspace: Path
    dataset: str
    model: str
    feedback: str
    seed: int
    status: str  # finished (train returns only finished runs)
    epochs_done: int | None
    best_epoch: int | None
    valid: dict  # validation metrics of the best epoch: ndcg@10, hr@10, skip_hr@10, ...
    wall_s: float | None
    reused: bool  # trained before with this exact dataset build and config
    config: TrainConfig = field(repr=False)
    metrics: pl.DataFrame = field(repr=False)  # one row per epoch (metrics.jsonl)

    @property
    def path(self) -> Path:
        return self.workspace / "runs" / self.id


@dataclass(frozen=True)
class Report:
    """A report: one row per group of runs (mean and 95 % interval over seeds of every metric) and the
    paired differences against the baseline group, as ``toolkit report`` prints them."""

    title: str
    dataset: str
    baseline: str | None  # the group the comparisons are against (None: nothing to compare)
    groups: pl.DataFrame  # group, model, feedback, seeds, sessions, queries, then <metric>, <metric>_lo, <metric>_hi
    comparisons: pl.DataFrame  # group, baseline, metric, diff, lo, hi, excludes_zero, unit, units
    runs: pl.DataFrame = field(repr=False)  # one row per run: id, group, seed, status, epochs, test metrics
    data: dict = field(repr=False, default_factory=dict)  # the whole report, as `toolkit report --json` prints it

    def write(self, path: str | Path) -> list[Path]:
        """Write the report: ``.html`` (and the ``.md`` beside it), ``.md`` or ``.json``; return the paths."""
        from toolkit.report.render import write_report

        return write_report(self.data, Path(path))


# ---------------------------------------------------------------------------------------------
# the verbs


def prep(logs, *, workspace: str | Path | Workspace | None = None, force: bool = False,
         progress: Callable[[str], None] | None = None, **options) -> Dataset:
    """Turn raw plays into sessions with skip labels, ids, splits and sequence arrays (``toolkit prep``).

    ``logs`` is a path or a list of paths (files, globs, folders, zip archives: what the command reads),
    or the plays themselves: a polars DataFrame, a pandas DataFrame or a pyarrow Table, read by its
    columns like a file (a table's dataset is named ``dataframe`` unless ``name=`` says).  The options
    are ``PrepConfig``'s fields; ``cols`` also takes a mapping ``{"user": "listener", ...}``.  Preparing
    the same input with the same options again reuses the dataset; ``force=True`` rebuilds it.

    Example::

        ds = toolkit.prep(plays, name="mine", session_gap_s=1800)
    """
    from toolkit.frames import as_table
    from toolkit.prep import prep as run_prep

    if isinstance(options.get("cols"), Mapping):
        options["cols"] = tuple(f"{role}={column}" for role, column in options["cols"].items())
    elif options.get("cols") is not None:
        options["cols"] = tuple(options["cols"])
    cfg = _config(PrepConfig, options, "prep")
    ws = _workspace(workspace)
    table = as_table(logs)
    prepared = run_prep(table if table is not None else _paths(logs), ws, cfg, progress, force=force)
    return Dataset.from_prep(ws.root, prepared)


def train(dataset: str | Dataset | None = None, *, workspace: str | Path | Workspace | None = None,
          progress: Callable[[TrainProgress], None] | None = None, **options) -> Run:
    """Train a recommender on a prepared dataset (``toolkit train``); return the finished run.

    ``dataset`` is a Dataset or a dataset name (default: the latest prepared).  The options are
    ``TrainConfig``'s fields (``model``, ``feedback``, ``epochs``, ``d_model``, ...).  The run id is a hash
    of the dataset build and the config, so the same call again returns the finished run (``reused``)
    and an interrupted one continues from its last checkpoint.  ``progress`` receives the events the
    command's progress bar shows (``toolkit.progress.TrainProgress`` records; ``phase``: start, resumed,
    step, epoch, stopped).

    Example::

        run = toolkit.train(ds, model="sasrec", feedback="contrastive", epochs=4, seed=1)
    """
    from toolkit.artifacts import read_json, read_metrics, run_dir
    from toolkit.train import train as run_train

    name, ws = _dataset(dataset, workspace)
    if "dataset" in options:
        raise ConfigError("train: pass the dataset as the first argument, not as dataset=")
    cfg = _config(TrainConfig, {**options, "dataset": name}, "train")
    result = run_train(ws, cfg, progress)
    run = run_dir(ws, result.id)
    saved = read_json(run.config)["train"]
    return Run(
        id=result.id, workspace=ws.root, dataset=result.dataset, model=result.model, feedback=result.feedback,
        seed=result.seed, status=result.status, epochs_done=result.epochs_done, best_epoch=result.best_epoch,
        valid=dict(result.valid), wall_s=result.wall_s, reused=result.reused,
        config=saved_config(saved),
        metrics=_frame(read_metrics(run)),
    )


def report(runs: str | Run | Iterable[str | Run] | None = None, *, dataset: str | Dataset | None = None,
           workspace: str | Path | Workspace | None = None, device: str = "auto", out: str | Path | None = None,
           progress: Callable[[str], None] | None = None, **protocol) -> Report:
    """Score runs on the test split against the whole catalogue and compare them (``toolkit report``).

    ``runs`` are Runs or run ids (default: every finished run of ``dataset``, else of the latest
    dataset).  The protocol options are ``report.Protocol``'s fields (``split``, ``positions``,
    ``exclude_played``, ``baseline``, ``bootstrap``, ``resample``, ``allow_unfinished``).  ``out`` also
    writes the report (``.html`` with a ``.md`` beside it, ``.md`` or ``.json``), as ``Report.write`` does.

    Example::

        rep = toolkit.report([markov, sasrec], bootstrap=1000)
        rep.groups.select("group", "ndcg@10", "ndcg@10_lo", "ndcg@10_hi")
    """
    from toolkit.report.protocol import Protocol
    from toolkit.report.scoring import build_report

    chosen = [runs] if isinstance(runs, (str, Run)) else list(runs or [])
    home = next((r.workspace for r in chosen if isinstance(r, Run)), None)
    name, ws = _dataset(dataset, workspace if workspace is not None else home)
    rep = build_report(ws, [r.id if isinstance(r, Run) else r for r in chosen], _config(Protocol, protocol, "report"),
                       name, device, progress)
    result = Report(title=rep["title"], dataset=rep["dataset"]["name"], baseline=rep["protocol"]["baseline"],
                    groups=_group_table(rep), comparisons=_comparison_table(rep), runs=_run_table(rep), data=rep)
    if out is not None:
        result.write(out)
    return result


def tune(dataset: str | Dataset | None = None, *, workspace: str | Path | Workspace | None = None,
         budget: str | float = "30m", trials: int | None = None, model: str = "sasrec", feedback: str = "all",
         seed: int = 0, progress: Callable | None = None, **settings):
    """Search training settings on validation within a time budget (``toolkit tune``); return the search.

    ``budget`` is seconds or a time such as ``"30m"`` or ``"2h"``: the training time of all trials
    together. The first trial is the study's defaults, each further one is proposed by Optuna's TPE
    sampler (seeded by ``seed``) from the validation NDCG@10 of the trials before; every trial is an
    ordinary run, so the same call again reuses them and continues the search. ``settings`` are
    ``TrainConfig`` fields fixed for every trial (they are not searched). The returned
    ``toolkit.tune.TuneResult`` holds every trial (``trials``, ``best``, ``default``), the count
    baselines scored on the same validation sessions (``baselines``) and the record's ``path``.

    Example::

        search = toolkit.tune(ds, budget="20m")
        search.best.params, search.best.value, search.baselines["repeat"]["value"]
    """
    from toolkit.tune import TuneConfig, parse_budget
    from toolkit.tune import tune as run_tune

    name, ws = _dataset(dataset, workspace)
    _config(TrainConfig, dict(settings), "tune")  # an unknown or mistyped setting fails as in `toolkit train`
    seconds = parse_budget(budget) if isinstance(budget, str) else float(budget)
    cfg = TuneConfig(dataset=name, budget_s=seconds, trials=trials, model=model, feedback=feedback, seed=seed,
                     fixed=dict(settings))
    return run_tune(ws, cfg, progress)


def recommend(run: str | Run, plays, *, skipped: Iterable[bool] | None = None, k: int = 20,
              listener: str | None = None, workspace: str | Path | Workspace | None = None, device: str = "cpu",
              allow_unfinished: bool = False, out: str | Path | None = None) -> pl.DataFrame:
    """The top-``k`` next tracks after a session (``toolkit recommend``), best first.

    ``plays`` is the session so far, oldest first: a list of track keys (``Dataset.items()``'s
    ``track_key``) or ``(artist, title)`` pairs, matched case-insensitively (the most played track of
    that name); ``skipped`` optionally flags each play, for models that read skips.  Returns ``rank,
    artist, title, score, track_key, item_id``.  For many sessions at once pass a DataFrame with the
    command's columns (``session``, ``track_key`` or ``item_id``, optional ``skipped``, ``position``); the
    result then has a ``session`` column.  Tracks outside the run's catalogue are left out with a
    warning; ``out`` also writes the result as parquet.  ``listener`` (a ``user_id`` of the dataset; by
    default its only listener, or a ``listener`` column of the DataFrame): the session follows that
    listener's plays, which runs with successors or history read as in evaluation; with no listener
    they read the session's own plays only, with a warning.

    Example::

        toolkit.recommend(run, [("Radiohead", "Reckoner"), ("Portishead", "Roads")], k=10)
    """
    import polars as pl

    from toolkit.artifacts import atomic_path
    from toolkit.recommend import top_k

    from toolkit.frames import as_table

    ws = _workspace(workspace if workspace is not None or not isinstance(run, Run) else run.workspace)
    run_id = run.id if isinstance(run, Run) else run
    table = as_table(plays)
    many = table is not None
    if many:
        frame = pl.from_arrow(table)
    else:
        session = [plays] if isinstance(plays, str) else list(plays)  # one key, not its letters
        frame = _session_frame(ws, run_id, session, None if skipped is None else list(skipped), allow_unfinished)
    recs, counts = top_k(ws, run_id, frame, k, device, allow_unfinished, "plays", listener)
    if counts.get("without_listener"):
        warnings.warn(f"run {run_id} reads the listener's earlier plays, but {counts['without_listener']} "
                      "sessions name no listener and read their own plays only; pass listener=", stacklevel=2)
    if counts["unknown_plays"]:
        warnings.warn(f"{counts['unknown_plays']} of {counts['plays']} plays are tracks outside the catalogue of "
                      f"run {run_id} and were left out", stacklevel=2)
    if counts["recommended"] == 0:
        raise InputError(f"plays: no track is in the catalogue of run {run_id}; pick tracks from the dataset's "
                         "items() (track_key, or artist and title)")
    columns = ["rank", "artist", "title", "score", "track_key", "item_id"]
    recs = recs.select(["session", *columns] if many else columns)
    if out is not None:
        with atomic_path(Path(out)) as tmp:
            recs.write_parquet(tmp)
    return recs


# ---------------------------------------------------------------------------------------------
# options, workspaces, datasets


def _config(cls, options: dict, command: str):
    """``cls(**options)``, an unknown option named with the nearest known ones instead of a TypeError."""
    known = [f.name for f in fields(cls)]
    for key in options:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=3)
            hint = f"did you mean {' or '.join(near)}?" if near else f"the options are {', '.join(known)}"
            raise ConfigError(f"{command}: unknown option {key}={options[key]!r}; {hint}")
    return cls(**options)


def _workspace(workspace) -> Workspace:
    from toolkit.artifacts import Workspace

    return workspace if isinstance(workspace, Workspace) else Workspace.at(workspace)


def _dataset(dataset, workspace) -> tuple[str | None, Workspace]:
    """The dataset name and the workspace: a Dataset brings its own unless ``workspace`` is given."""
    if isinstance(dataset, Dataset):
        return dataset.name, _workspace(workspace if workspace is not None else dataset.workspace)
    if dataset is not None and not isinstance(dataset, str):
        raise ConfigError(f"dataset: pass a Dataset or a dataset name, not {type(dataset).__name__}")
    return dataset, _workspace(workspace)


def _paths(logs) -> list[Path]:
    if isinstance(logs, (str, Path)):
        return [Path(logs)]
    items = list(logs) if isinstance(logs, (list, tuple)) else []
    if not items or not all(isinstance(p, (str, Path)) for p in items):
        raise InputError(f"prep: logs is {type(logs).__name__} {str(logs)[:60]!r}; pass a path, a list of paths, "
                         "or the plays as a polars or pandas DataFrame or a pyarrow Table")
    return [Path(p) for p in items]


def _session_frame(ws, run_id: str, plays: list, skipped: list | None, allow_unfinished: bool) -> pl.DataFrame:
    """One session's plays as ``toolkit recommend``'s columns: keys stay keys, (artist, title) pairs
    become the item id of the most played track of that name (item ids go by plays), or none."""
    import polars as pl

    from toolkit.runs import select_runs

    if not plays:
        raise InputError("plays: the session is empty; pass at least one track key or (artist, title) pair")
    if skipped is not None and len(skipped) != len(plays):
        raise InputError(f"skipped: {len(skipped)} flags for {len(plays)} plays; pass one per play")
    keys: list[str | None] = []
    pairs = [p for p in plays if not isinstance(p, str)]
    if any(not (isinstance(p, (tuple, list)) and len(p) == 2) for p in pairs):
        bad = next(p for p in pairs if not (isinstance(p, (tuple, list)) and len(p) == 2))
        raise InputError(f"plays: {bad!r} is neither a track key nor an (artist, title) pair")
    by_name: dict[tuple[str, str], str] = {}
    if pairs:
        run = select_runs(ws, [run_id], None, allow_unfinished)[0]
        items = pl.read_parquet(ws.dataset(run.config.dataset).items, columns=["item_id", "track_key", "artist",
                                                                                 "title"])
        wanted = {_name_key(*p) for p in pairs}
        for row in items.sort("item_id").iter_rows(named=True):
            key = _name_key(row["artist"], row["title"])
            if key in wanted and key not in by_name:
                by_name[key] = row["track_key"]
    for p in plays:
        keys.append(p if isinstance(p, str) else by_name.get(_name_key(*p)))
    return pl.DataFrame({"session": [0] * len(plays), "track_key": keys,
                         "skipped": skipped if skipped is not None else [False] * len(plays)},
                        schema={"session": pl.Int64, "track_key": pl.String, "skipped": pl.Boolean})


def _name_key(artist, title) -> tuple[str, str]:
    return (str(artist or "").strip().casefold(), str(title or "").strip().casefold())


# ---------------------------------------------------------------------------------------------
# the report's tables


def _frame(rows: list[dict]) -> pl.DataFrame:
    import polars as pl

    return pl.from_dicts(rows, infer_schema_length=None) if rows else pl.DataFrame()


def _group_table(rep: dict) -> pl.DataFrame:
    rows = []
    for g in rep["groups"]:
        row = {"group": g["key"], "model": g["model"], "feedback": g["feedback"], "seeds": len(g["seeds"]),
               "sessions": g["n_sessions"], "positive_queries": g["n_pos"], "skip_queries": g["n_skip"]}
        for metric in rep["metrics"]:
            stat = g["metrics"].get(metric, {})
            row.update({metric: stat.get("mean"), f"{metric}_lo": stat.get("lo"), f"{metric}_hi": stat.get("hi")})
        rows.append(row)
    return _floats(_frame(rows), [c for m in rep["metrics"] for c in (m, f"{m}_lo", f"{m}_hi")])


def _comparison_table(rep: dict) -> pl.DataFrame:
    import polars as pl

    rows = [{"group": c["group"], "baseline": c["baseline"], "metric": c["metric"], "diff": c["diff"], "lo": c["lo"],
             "hi": c["hi"], "excludes_zero": c["excludes_zero"], "unit": c.get("unit"), "units": c.get("n_units")}
            for c in rep["comparisons"]]
    schema = {"group": pl.String, "baseline": pl.String, "metric": pl.String, "diff": pl.Float64, "lo": pl.Float64,
              "hi": pl.Float64, "excludes_zero": pl.Boolean, "unit": pl.String, "units": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def _run_table(rep: dict) -> pl.DataFrame:
    rows = [{"id": r["id"], "group": r["group"], "seed": r["seed"], "status": r["status"],
             "epochs_done": r["epochs_done"], "best_epoch": r["best_epoch"], "wall_s": r["wall_s"],
             "valid_ndcg@10": r["valid_ndcg@10"], **{f"test_{k}": v for k, v in r["test"].items()
                                                     if isinstance(v, (int, float))}}
            for r in rep["runs"]]
    return _frame(rows)


def _floats(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Metric columns as Float64 even where every value is missing (a log without skips)."""
    import polars as pl

    present = [c for c in columns if c in frame.columns]
    return frame.with_columns(pl.col(present).cast(pl.Float64)) if present else frame


# ---------------------------------------------------------------------------------------------
# signatures: each verb shows its config's fields as keyword options (help(), IDE completion)


def _show_options(fn: Callable, config: type, *, leave_out: tuple[str, ...] = ()) -> None:
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    taken = {p.name for p in params} | set(leave_out)
    for f in fields(config):
        if f.name not in taken:
            default = f.default if f.default is not MISSING else inspect.Parameter.empty
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=f.type))
    fn.__signature__ = sig.replace(parameters=params)


_show_options(prep, PrepConfig)
_show_options(train, TrainConfig, leave_out=("dataset",))
# report's options stay **protocol: report.Protocol lives beside the scoring code, which loads torch

__all__ = ["Dataset", "Report", "Run", "prep", "recommend", "report", "train", "tune"]