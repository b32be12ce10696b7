"""Project-wide rules: the library stays quiet, numba flags live in one place, the wheel ships
everything a non-editable install needs."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_library_code_never_prints():
    allowed = ROOT / "toolkit" / "cli"  # the command line is the one place that talks to the terminal
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for folder in ("toolkit", "kernels")
        for p in (ROOT / folder).rglob("*.py") if allowed not in p.parents
        for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"(^|[^\w.])print\(", line)
    ]
    assert offenders == []


def test_wheel_ships_the_sql_and_the_kernels(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot build a wheel here (no build backend reachable): {result.stderr.strip()[-200:]}")
    wheel = next(tmp_path.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for sql_file in (ROOT / "sql").rglob("*.sql"):
        assert f"toolkit/_sql/{sql_file.relative_to(ROOT / 'sql')}" in names
    for kernel in (ROOT / "kernels").glob("*.py"):
        assert f"kernels/{kernel.name}" in names


def test_readme_test_command_is_the_one_ci_runs():
    """CI runs the README's test command verbatim; the two must not drift apart."""
    readme = (ROOT / "README.md").read_text()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.startswith("python -m pytest")]
    assert len(ci) == 1, ci
    assert f"\n    {ci[0]}\n" in readme


def test_user_docs_link_to_files_that_exist_and_name_no_private_folders():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"
        assert "../shared" not in text and not re.search(r"(^|[\s`(])/work/", text), page.relative_to(ROOT)
