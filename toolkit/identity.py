"""What a prepared dataset and a trained run are, so nothing built from one thing is taken for another.

A dataset *build* is its input content (``fingerprint``: a hash of every input file), the prep
options that change what is written, the format read, the pipeline label (``prep.PIPELINE``)
and the on-disk format version.  ``build_of`` hashes those; a run records the build it was trained
on (``config.json``: ``dataset_build``), and a run whose build is not the dataset's current one is
*stale*: ``report`` and ``recommend`` refuse it, ``train`` never reuses it.

Names of datasets and run ids become folder names in the workspace, so they are checked here
before any path is built from them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict

from toolkit.config import BUILD, PrepConfig, TrainConfig, identities_before, identity, roles
from toolkit.errors import ConfigError, ToolkitError

NAME = re.compile(r"[A-Za-z0-9_.-]+")
# prep options that never change what is written (each PrepConfig field declares it, config.BUILD):
# where it goes, and how much memory / how many threads (``memory`` sets how many buckets of listeners
# prep works in, which gives the same dataset); the format read enters the build on its own
OUTPUT_NEUTRAL = tuple(name for name, role in roles(PrepConfig).items() if role != BUILD)


class BadNameError(ConfigError):
    """A dataset name or run id that is not a plain folder name inside the workspace."""


class DatasetExistsError(ConfigError):
    """``prep`` of other input or options into the name of an existing dataset."""


class StaleRunError(ToolkitError):
    """A run trained on an earlier build of its dataset."""


def check_name(text: str, what: str) -> str:
    """``text`` when it is a usable dataset name / run id: ``[A-Za-z0-9_.-]+``, not starting with '.'
    (so never '.' or '..', nor one of prep's hidden work folders); else a one-line error."""
    if not isinstance(text, str) or not NAME.fullmatch(text) or text.startswith("."):
        hint = "`toolkit runs` lists the run ids" if what == "run" else "`toolkit datasets` lists the datasets"
        raise BadNameError(f"{what} {text!r}: not a {what} {'id' if what == 'run' else 'name'} (use letters, digits, "
                           f"'_', '.' and '-', not starting with '.'); {hint}")
    return text


def _roundtrip(value):
    return json.loads(json.dumps(value, default=str))


def build_options(config: dict) -> dict:
    """The prep options of ``config`` (a manifest's ``config``) that shape the output, each only when
    it differs from its default, so an option added later keeps the builds made before it."""
    defaults = _roundtrip(asdict(PrepConfig()))
    config = _roundtrip(config)
    return {k: v for k, v in sorted(config.items()) if k not in OUTPUT_NEUTRAL and defaults.get(k, object()) != v}


def build_key(fingerprint: str, fmt: str | None, config: dict, pipeline: str | None, format_version) -> str:
    key = json.dumps({"input": fingerprint, "format": fmt, "options": build_options(config), "pipeline": pipeline,
                      "format_version": format_version}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()


def build_of(manifest: dict) -> str:
    """The dataset build of a manifest (computed for manifests written before builds were recorded)."""
    return manifest.get("build") or build_key(manifest.get("fingerprint", ""), manifest.get("format"),
                                              manifest.get("config", {}), manifest.get("pipeline"),
                                              manifest.get("format_version"))


def run_id(manifest, cfg: TrainConfig) -> str:
    """Deterministic id: same dataset build, same config (``config.identity``) -> same run.

    The build (input, prep options, pipeline label: ``build_of``) enters the id the way a later
    setting does: a dataset prepared before builds were recorded, and rebuilt only into that same
    build, keeps its runs' first ids (input fingerprint + pipeline label), marked by its manifest's
    ``run_ids: input``; every other dataset (``run_ids: build``) names its runs by the build, so a
    dataset prepared again with other input or options never reuses a run of the old one.
    """
    return _run_id(manifest, cfg, identity(cfg))


def run_ids_before(manifest, cfg: TrainConfig) -> list[str]:
    """The ids ``cfg``'s run may have on disk from when the runtime knobs (device, compile) were part
    of the id as set (``config.identities_before``): an old ``--device cpu`` run is still found."""
    return [_run_id(manifest, cfg, old) for old in identities_before(cfg)]


def _run_id(manifest, cfg: TrainConfig, settings: dict) -> str:
    manifest = manifest.to_json() if hasattr(manifest, "to_json") else manifest  # a Manifest record, or its JSON
    parts = {"data": manifest["fingerprint"], "pipeline": manifest.get("pipeline"), "cfg": settings}
    if manifest.get("run_ids") == "build":
        parts["build"] = build_of(manifest)
    key = json.dumps(parts, sort_keys=True)
    return f"{cfg.model}-{cfg.feedback.replace('+', '_')}-s{cfg.seed}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def run_is_stale(recorded: dict, manifest: dict) -> bool:
    """Whether a run whose ``config.json`` is ``recorded`` was trained on another build than ``manifest``'s.

    A run records ``dataset_build`` since builds exist; an older run only ``dataset_fingerprint`` (the
    input), which suffices while the dataset keeps the run ids of its first build (``run_ids: input``);
    once the dataset was rebuilt otherwise, such a run cannot be told apart and counts as stale.
    """
    if recorded.get("dataset_build"):
        return recorded["dataset_build"] != build_of(manifest)
    return recorded.get("dataset_fingerprint") != manifest.get("fingerprint") or manifest.get("run_ids") == "build"


def stale_message(run_id: str, dataset: str) -> str:
    return (f"run {run_id} is stale: it was trained on an earlier build of dataset {dataset} (prepared again since "
            f"from other input, options or prep version); retrain it on the current build with "
            f"`toolkit train --resume {run_id}` (same settings, new run id) and use the new run")
