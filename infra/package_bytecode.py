"""Bytecode for every module deployment.zip ships (run by `make package`, after `chalice package`).

    python infra/package_bytecode.py build/<stage>/deployment.zip

Lambda's file system is read-only, so a module without bytecode in the package is compiled from
its source at every cold start, and the result thrown away. `make package` compiles chalicelib/
before chalice zips it, but chalice adds the rest as sources only: app.py, its own runtime
(chalice/app.py, about 2,000 lines, which every function imports) and the Lambda-platform
wheels of requirements.txt (pydantic, Powertools, requests, ...), which it unpacks without
compiling. This adds to the zip, beside each such source, the bytecode the import system looks
for (`__pycache__/<name>.<cache tag>.pyc`), hash-checked as chalicelib's: a file is used only
while its source is the one it was compiled from, here or in Lambda.

The interpreter running this is the one `chalice package` ran with, whose version chose the
functions' runtime (python3.X), so the bytecode is that runtime's. A source that does not
compile (a wheel may carry a template or a file for another Python) is left as it is: its
import, if anything imports it, fails or compiles as before. Run again on the same zip, it adds
nothing.
"""

from __future__ import annotations

import py_compile
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath


def bytecode_name(source: str) -> str:
    """Where the import system looks for a module's bytecode, as a path inside the zip."""
    path = PurePosixPath(source)
    return str(path.parent / "__pycache__" / f"{path.stem}.{sys.implementation.cache_tag}.pyc")


def add_bytecode(package: Path) -> tuple[int, list[str]]:
    """Compile every source in the zip that has no bytecode beside it; returns (how many were
    added, the sources that did not compile)."""
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        wanted = sorted(name for name in names
                        if name.endswith(".py") and bytecode_name(name) not in names)
        sources = {name: (archive.read(name), archive.getinfo(name).date_time)
                   for name in wanted}
    failed: list[str] = []
    compiled: dict[str, tuple[bytes, tuple[int, int, int, int, int, int]]] = {}
    with tempfile.TemporaryDirectory() as work:
        for name, (source, date_time) in sources.items():
            unpacked = Path(work) / name
            unpacked.parent.mkdir(parents=True, exist_ok=True)
            unpacked.write_bytes(source)
            target = Path(work) / bytecode_name(name)
            try:
                py_compile.compile(str(unpacked), cfile=str(target), dfile=name, doraise=True,
                                   invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
            except py_compile.PyCompileError:
                failed.append(name)
                continue
            compiled[bytecode_name(name)] = (target.read_bytes(), date_time)
    with zipfile.ZipFile(package, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, (data, date_time) in sorted(compiled.items()):
            entry = zipfile.ZipInfo(name, date_time=date_time)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, data)
    return len(compiled), failed


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python infra/package_bytecode.py build/<stage>/deployment.zip",
              file=sys.stderr)
        return 2
    added, failed = add_bytecode(Path(argv[0]))
    print(f"{argv[0]}: bytecode added for {added} modules"
          + (f"; {len(failed)} sources do not compile and stay as they are" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
