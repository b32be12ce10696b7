"""Command-line options derived from the config fields' own declarations (``config.setting``).

A setting declared with ``flag=True`` becomes an option of the command: its name (``--d-model`` for
``d_model``), default, help text, help panel and choices all come from the field, so nothing about it
is written a second time in the command line.  The others are set with ``--set key=value``.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import fields
from typing import Literal, Optional

import typer

from toolkit.config import FEEDBACK_MODES, PANELS

# a field's annotation (text: configs use ``from __future__ import annotations``) as the type typer parses
_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "int | None": Optional[int],
          "float | None": Optional[float], "str | None": Optional[str], "tuple[str, ...]": list[str]}


def feedback_modes(value: str) -> str:
    """--feedback: one mode, or several joined with '+', each one of config.FEEDBACK_MODES (which
    combinations make sense TrainConfig decides, with a message saying why)."""
    unknown = [m for m in value.split("+") if m not in FEEDBACK_MODES]
    if unknown:
        raise typer.BadParameter(f"{' and '.join(map(repr, unknown))} is not a feedback mode; choose from "
                                 f"{', '.join(FEEDBACK_MODES)}, or join several with '+'")
    return value


def complete_feedback(incomplete: str) -> list[str]:
    """Shell completion of --feedback: the modes, after any already joined with '+'."""
    done, _, last = incomplete.rpartition("+")
    return [f"{done}+{m}" if done else m for m in FEEDBACK_MODES if m.startswith(last)]


# the one setting whose values combine ('+'-joined modes), so a closed set of choices cannot describe it
_PARSED = {"feedback": {"parser": feedback_modes, "autocompletion": complete_feedback}}


def options(cls) -> list[inspect.Parameter]:
    """One keyword parameter per flagged field of the config class ``cls``, ordered by help panel
    (config.PANELS), then as the fields are declared."""
    flagged = sorted((f for f in fields(cls) if f.metadata.get("flag")),
                     key=lambda f: PANELS.index(f.metadata["panel"]))
    out = []
    for f in flagged:
        meta = f.metadata
        kind = Literal[meta["choices"]] if meta["choices"] else _TYPES[str(f.type)]
        names = meta["names"] or ((f"--{f.name.replace('_', '-')}",) if kind is bool else ())  # a switch: no --no-X twin
        extra = dict(_PARSED.get(f.name, {}))
        if meta["metavar"]:
            extra["metavar"] = meta["metavar"]
        default = list(f.default) if isinstance(f.default, tuple) else f.default  # a repeated option
        option = typer.Option(default, *names, rich_help_panel=meta["panel"], help=meta["help"], **extra)
        out.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))
    return out


def with_options(cls, after: dict[str, str]):
    """Decorate a command ``fn(own parameters..., **settings)`` so that its signature (what typer
    reads) also holds an option per flagged field of ``cls``; ``fn`` gets the settings' values in
    ``**settings``.  ``after`` places an own parameter right after a setting (else it goes last), so
    the help lists it in that setting's panel and place."""

    def decorate(fn):
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(fn, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        placed = {after[p.name]: p for p in own if p.name in after}
        params = []
        for p in options(cls):
            params += [p, placed[p.name]] if p.name in placed else [p]
        params += [p for p in own if p.name not in after]

        @functools.wraps(fn)
        def command(**kwargs):
            return fn(**kwargs)

        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer reads the signature above, never fn's own
        command.body = fn  # the command as written (tests read its source)
        return command

    return decorate
