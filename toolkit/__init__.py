"""Sequential music recommendation that learns from skips.

From Python::

    import toolkit

    ds = toolkit.prep(plays)                      # paths, or a polars / pandas DataFrame, a pyarrow Table
    run = toolkit.train(ds, model="sasrec", epochs=4)
    rep = toolkit.report([run])                   # rep.groups, rep.comparisons: polars DataFrames
    toolkit.recommend(run, ["track key", ("Artist", "Title")])

``toolkit.api`` documents each function; docs/api.md walks through them.  ``import toolkit`` loads
nothing heavy: each function imports what it needs (torch only for train, report and recommend).
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

VERBS = ("prep", "train", "report", "recommend", "tune")


class _Verb:
    """``toolkit.prep`` / ``train`` / ``report`` / ``recommend``: called, the function of that name in
    ``toolkit.api``; for everything else, the stage module of that name.

    The names are taken twice: by the notebook functions and by the modules ``toolkit/prep.py`` etc.
    that the rest of the toolkit and its tests use (``from toolkit import train as train_module``,
    ``monkeypatch.setattr(train_module, ...)``).  One object serves both, so neither changes meaning
    with import order, and nothing is imported until it is used.
    """

    # no __dict__ of its own: ``vars()`` and ``obj.__dict__`` (which monkeypatch reads to undo) reach the module's
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def __call__(self, *args, **kwargs):
        return getattr(_api(), self._name)(*args, **kwargs)

    def __getattr__(self, attr: str):
        # probes of inspect (__wrapped__) and of notebook display (_repr_html_, ...) find nothing here
        # rather than load the module, and torch with it, just to answer them
        probe = attr.startswith(("_ipython", "_repr_")) or (attr.startswith("__") and attr.endswith("__"))
        if probe and f"{__name__}.{self._name}" not in sys.modules:
            raise AttributeError(attr)
        return getattr(self._module(), attr)

    def __setattr__(self, attr: str, value) -> None:
        setattr(self._module(), attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(self._module(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._module())

    def __repr__(self) -> str:
        return f"<function toolkit.{self._name}, also the module toolkit.{self._name}>"

    # help(), IPython's ``?`` and IDEs read these: the notebook function's
    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return getattr(_api(), self._name).__doc__

    @property
    def __signature__(self):
        import inspect

        return inspect.signature(getattr(_api(), self._name))

    def _module(self) -> types.ModuleType:
        return importlib.import_module(f"{__name__}.{self._name}")


def _api() -> types.ModuleType:
    return importlib.import_module(f"{__name__}.api")


class _Package(types.ModuleType):
    """The ``toolkit`` package: importing ``toolkit.train`` (the module) would bind the name ``train``
    to it; the verb keeps the name, and the module stays in ``sys.modules`` and behind the verb."""

    def __setattr__(self, name: str, value) -> None:
        if name in VERBS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


def __getattr__(name: str):
    # the records and the workspace, imported on first use (artifacts loads duckdb and numpy)
    if name == "Workspace":
        from toolkit.artifacts import Workspace

        return Workspace
    if name in ("Dataset", "Run", "Report"):
        return getattr(_api(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


for _name in VERBS:
    globals()[_name] = _Verb(_name)
del _name
sys.modules[__name__].__class__ = _Package

__all__ = ["Dataset", "Report", "Run", "Workspace", "__version__", *VERBS]
