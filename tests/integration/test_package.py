"""`make package` ships the app and none of the local stack.

deployment.zip must hold app.py and every module of chalicelib/ (what Lambda runs) and nothing
of devstack/: no module of it, so no simulator, no local endpoint and no event runner. The
package is built as tests/packaging.py says (the Makefile's target on a copy of the project,
without chalice's download of the Lambda-platform wheels, which cannot bring devstack/ in as
long as requirements.txt names only pinned registry packages: the last test checks it).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from infra.package_bytecode import add_bytecode, bytecode_name
from tests.packaging import Project

ROOT = Path(__file__).resolve().parents[2]
LOCAL_STACK = ROOT / "devstack"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """deployment.zip as `make package` builds it (stage dev, the Makefile's default)."""
    build = Project(tmp_path_factory.mktemp("package")).package("dev")
    with zipfile.ZipFile(build / "deployment.zip") as archive:
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


def test_what_chalice_adds_as_sources_ships_with_bytecode_too(package: zipfile.ZipFile) -> None:
    """app.py and chalice's runtime (and, in a package with its wheels, every vendored module:
    the next test) are zipped by chalice as sources only; the package step compiles them."""
    names = set(package.namelist())
    for source in ("app.py", "chalice/app.py", "chalice/__init__.py"):
        assert source in names
        flags = int.from_bytes(package.read(bytecode_name(source))[4:8], "little")
        assert flags == 0b11, f"{source}: flags {flags:#b}, not hash-based and checked"
    assert [name for name in names if name.endswith(".py") and bytecode_name(name) not in names] \
        == []


def test_vendored_modules_are_compiled_into_the_zip_as_the_import_system_finds_them(
        tmp_path: Path) -> None:
    """What chalice's download adds (a wheel's modules, unpacked without bytecode), on a zip
    of our own: each module gets its bytecode, which the interpreter uses from the unpacked
    package; a source that does not compile stays as it is; a second run adds nothing."""
    package = tmp_path / "deployment.zip"
    with zipfile.ZipFile(package, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("vendored_lib/__init__.py", "from vendored_lib.part import VALUE\n")
        archive.writestr("vendored_lib/part.py", "VALUE = 42\n")
        archive.writestr("vendored_lib/template.py", "def broken(:\n")
    assert add_bytecode(package) == (2, ["vendored_lib/template.py"])
    assert add_bytecode(package) == (0, ["vendored_lib/template.py"])
    unpacked = tmp_path / "task"
    with zipfile.ZipFile(package) as archive:
        archive.extractall(unpacked)
    script = "import vendored_lib; print(vendored_lib.VALUE)"
    verbose = subprocess.run([sys.executable, "-v", "-c", script], cwd=unpacked, check=True,
                             capture_output=True, text=True,
                             env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert verbose.stdout.split()[0] == "42"
    used = [line for line in verbose.stderr.splitlines() if "vendored_lib" in line]
    assert any(line.startswith("# code object from") and line.rstrip().endswith(
        f"part.{sys.implementation.cache_tag}.pyc'") for line in used), used


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
