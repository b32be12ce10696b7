"""``python -m toolkit`` runs the command-line interface."""

from toolkit.cli import app

app(prog_name="toolkit")
