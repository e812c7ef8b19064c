"""`make package` ships the app and none of the local stack.

deployment.zip must hold app.py and every module of chalicelib/ (what Lambda runs) and nothing
of devstack/: no module of it, so no simulator, no local endpoint and no event runner.

How the package is built here, and why: the Makefile's own `package` target runs (`make
package`, so its recipe and chalice's packager decide what goes in) on a copy of the project in
a temporary directory, so build/ and chalice's cache (.chalice/deployments/) stay out of the
working tree. One step is skipped: the chalice it runs does not download requirements.txt's
Lambda-platform wheels. That step needs PyPI and takes about 14 s, and chalice keys its cache
on requirements.txt *and* the app's source, so every change to app.py or chalicelib/ pays it
again. The wheels cannot bring devstack/ in as long as requirements.txt names only pinned
registry packages, which the last test checks.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL_STACK = ROOT / "devstack"
# Left out of the copy: the environment, version control, caches, local run state, earlier
# builds and chalice's deployment cache (a cached zip would be reused instead of built).
NOT_COPIED = {ROOT: frozenset({".git", ".venv", "build", ".local", ".mypy_cache",
                               ".pytest_cache", ".ruff_cache", ".hypothesis"}),
              ROOT / ".chalice": frozenset({"deployments"})}
# Make's settings for its own children: a `make test` above us must not steer this make.
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL", "STAGE")

CHALICE_WITHOUT_DOWNLOADS = """#!{python}
# chalice as `make package` runs it, except that requirements.txt's Lambda-platform wheels are
# not downloaded (tests/integration/test_package.py says why).
import sys

from chalice.cli import main
from chalice.deploy.packager import DependencyBuilder

DependencyBuilder.build_site_packages = lambda *args, **kwargs: None
sys.exit(main())
"""


def _not_copied(directory: str, names: list[str]) -> set[str]:
    left_out = NOT_COPIED.get(Path(directory), frozenset()) | {"__pycache__"}
    return {name for name in names if name in left_out}


def _chalice_without_downloads(bin_dir: Path) -> None:
    bin_dir.mkdir()
    chalice = bin_dir / "chalice"
    chalice.write_text(CHALICE_WITHOUT_DOWNLOADS.format(python=sys.executable))
    chalice.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)  # $(BIN)/python, as the venv's


def _make_package(project: Path, bin_dir: Path) -> None:
    """`make package` in ``project``, with $(BIN)/chalice the wrapper; the venv is not set up
    again (-o: its stamp counts as up to date), it is the one running these tests."""
    env = {name: value for name, value in os.environ.items() if name not in MAKE_VARIABLES}
    command = ["make", "--no-print-directory", "-o", ".venv/.installed-stamp",
               f"BIN={bin_dir}", "package"]
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, f"make package failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """deployment.zip as `make package` builds it (stage dev, the Makefile's default)."""
    work = tmp_path_factory.mktemp("package")
    project = work / "project"
    shutil.copytree(ROOT, project, ignore=_not_copied, symlinks=True)
    _chalice_without_downloads(work / "bin")
    _make_package(project, work / "bin")
    with zipfile.ZipFile(project / "build" / "dev" / "deployment.zip") as archive:
        yield archive


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _local_stack_modules() -> dict[str, str]:
    """Digest of each devstack module's source -> its path (empty files say nothing)."""
    return {_digest(path.read_bytes()): path.relative_to(ROOT).as_posix()
            for path in LOCAL_STACK.rglob("*.py") if path.stat().st_size}


def test_the_package_holds_app_py_and_every_chalicelib_module(package: zipfile.ZipFile) -> None:
    shipped = set(package.namelist())
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "chalicelib").rglob("*.py")}
    assert len(modules) > 10
    assert sorted(modules - shipped) == []
    assert package.read("app.py") == (ROOT / "app.py").read_bytes()


def test_every_module_ships_with_bytecode_checked_against_its_source(
        package: zipfile.ZipFile) -> None:
    """Lambda cannot write bytecode, so a module without it is compiled at every cold start;
    a hash-checked .pyc is used only while its source is the one it was compiled from."""
    tag = sys.implementation.cache_tag
    sources = [name for name in package.namelist()
               if name.startswith("chalicelib/") and name.endswith(".py")]
    assert sources
    for source in sources:
        path = PurePosixPath(source)
        compiled = str(path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc")
        flags = int.from_bytes(package.read(compiled)[4:8], "little")  # PEP 552 header
        assert flags == 0b11, f"{compiled}: flags {flags:#b}, not hash-based and checked"


def test_the_package_holds_nothing_of_the_local_stack(package: zipfile.ZipFile) -> None:
    in_devstack = [name for name in package.namelist() if "devstack" in PurePosixPath(name).parts]
    assert in_devstack == []
    # A module moved or copied elsewhere (back into chalicelib/, say) keeps its content.
    local_stack = _local_stack_modules()
    assert {"devstack/events/runner.py", "devstack/marketplaces/base.py",
            "devstack/courier.py", "devstack/endpoint.py"} <= set(local_stack.values())
    copies = {name: local_stack[digest] for name in package.namelist()
              if (digest := _digest(package.read(name))) in local_stack}
    assert copies == {}


def test_requirements_name_only_pinned_registry_packages() -> None:
    """The wheels the package test does not download: no path, URL or editable install
    (which could bring in this project, devstack/ and all), only `name==version`."""
    pinned = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?==[A-Za-z0-9.+!-]+")
    lines = [line.split("#", 1)[0].strip()
             for line in (ROOT / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line]
    assert requirements
    assert [line for line in requirements if not pinned.fullmatch(line)] == []
