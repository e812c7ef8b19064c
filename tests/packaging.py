"""`make package` as the tests run it: on a copy of the project, without chalice's download.

How the package is built here, and why: the Makefile's own `package` target runs (`make
package`, so its recipe, chalice's packager and infra/stage_template.py decide what comes out)
on a copy of the project in a temporary directory, so build/ and chalice's cache
(.chalice/deployments/) stay out of the working tree. One step is skipped: the chalice it runs
does not download requirements.txt's Lambda-platform wheels. That step needs PyPI and takes
about 14 s, and chalice keys its cache on requirements.txt *and* the app's source, so every
change to app.py or chalicelib/ pays it again. The wheels add only site-packages to the zip:
the template, and what tests/integration/test_package.py checks of the zip, do not depend on
them (as long as requirements.txt names only pinned registry packages, which it checks).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Left out of the copy: the environment, version control, caches, local run state, earlier
# builds and chalice's deployment cache (a cached zip would be reused instead of built).
NOT_COPIED = {ROOT: frozenset({".git", ".venv", "build", ".local", ".mypy_cache",
                               ".pytest_cache", ".ruff_cache", ".hypothesis"}),
              ROOT / ".chalice": frozenset({"deployments"})}
# Make's settings for its own children: a `make test` above us must not steer this make.
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL", "STAGE", "BUCKET",
                  "OPS_EMAIL", "CONSOLE_URL")

CHALICE_WITHOUT_DOWNLOADS = """#!{python}
# chalice as `make package` runs it, except that requirements.txt's Lambda-platform wheels are
# not downloaded (tests/packaging.py says why).
import sys

from chalice.cli import main
from chalice.deploy.packager import DependencyBuilder

DependencyBuilder.build_site_packages = lambda *args, **kwargs: None
sys.exit(main())
"""


def _not_copied(directory: str, names: list[str]) -> set[str]:
    left_out = NOT_COPIED.get(Path(directory), frozenset()) | {"__pycache__"}
    return {name for name in names if name in left_out}


class Project:
    """A copy of the project in `work`/project, with $(BIN) a directory whose chalice is the
    wrapper above and whose python is the one running the tests (the venv is not set up again:
    `make -o` counts its stamp as up to date)."""

    def __init__(self, work: Path) -> None:
        self.root = work / "project"
        self.bin = work / "bin"
        shutil.copytree(ROOT, self.root, ignore=_not_copied, symlinks=True)
        self.bin.mkdir()
        chalice = self.bin / "chalice"
        chalice.write_text(CHALICE_WITHOUT_DOWNLOADS.format(python=sys.executable))
        chalice.chmod(0o755)
        (self.bin / "python").symlink_to(sys.executable)  # $(BIN)/python, as the venv's

    def make(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        env = {name: value for name, value in os.environ.items() if name not in MAKE_VARIABLES}
        command = ["make", "--no-print-directory", "-o", ".venv/.installed-stamp",
                   f"BIN={self.bin}", *arguments]
        return subprocess.run(command, cwd=self.root, env=env, capture_output=True, text=True,
                              timeout=300, check=False)

    def package(self, stage: str = "dev") -> Path:
        """`make package STAGE=<stage>`; the stage's build directory."""
        done = self.make("package", f"STAGE={stage}")
        assert done.returncode == 0, f"make package failed:\n{done.stdout}\n{done.stderr}"
        return self.root / "build" / stage
