"""The memlayer layer ships compiled (layers/memlayer/Makefile, run as `sam build` runs it: on a
copy of the ContentUri): the package's files plus one unchecked-hash .pyc per module, which the
interpreter loads without compiling or checking the source, whatever the files' mtimes (a
zip's are not the build's)."""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.layers import SOURCE, build_memlayer_layer

# Lambda compiles nothing only if it reads the hash-based flag (bit 0) without check_source (1).
UNCHECKED_HASH_FLAGS = 0b01
# Imports every module of the package found under sys.path[0] and prints which it compiled.
PROBE = """
import importlib, importlib.machinery, json, os, pkgutil, sys
compiled = []
source_to_code = importlib.machinery.SourceFileLoader.source_to_code
def recording(self, data, path, **kwargs):
    compiled.append(os.path.relpath(path, sys.path[0]))
    return source_to_code(self, data, path, **kwargs)
importlib.machinery.SourceFileLoader.source_to_code = recording
import memlayer
names = [m.name for m in pkgutil.walk_packages(memlayer.__path__, "memlayer.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"file": memlayer.__file__, "modules": len(names) + 1, "compiled": compiled}))
"""


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the ContentUri with a developer's bytecode cache in it (another version's, and
    a timestamp .pyc of this one), which must not ship."""
    scratch = tmp_path_factory.mktemp("content") / "memlayer-layer"
    shutil.copytree(SOURCE, scratch, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    text = scratch / "memlayer" / "text.py"
    py_compile.compile(
        str(text), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP
    )
    (text.parent / "__pycache__" / "text.cpython-39.pyc").write_bytes(b"another version's")
    return scratch


@pytest.fixture(scope="module")
def layer(scratch: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_memlayer_layer(tmp_path_factory.mktemp("artifacts"), source=scratch)


def _files(root: Path) -> set[Path]:
    return {path.relative_to(root) for path in root.rglob("*") if path.is_file()}


def test_the_layer_holds_the_package_and_one_unchecked_hash_pyc_per_module(layer: Path) -> None:
    package = SOURCE / "memlayer"
    shipped = {
        path
        for path in _files(package)
        if "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    modules = sorted(path for path in shipped if path.suffix == ".py")
    assert len(modules) > 50
    pycs = {Path(importlib.util.cache_from_source(str(path))) for path in modules}
    assert _files(layer / "memlayer") == shipped | pycs
    for module in modules:
        data = (layer / "memlayer" / importlib.util.cache_from_source(str(module))).read_bytes()
        assert data[:4] == importlib.util.MAGIC_NUMBER, module
        assert int.from_bytes(data[4:8], "little") == UNCHECKED_HASH_FLAGS, module
        assert data[8:16] == importlib.util.source_hash((package / module).read_bytes()), module
        code = marshal.loads(data[16:])  # noqa: S302 - the build we just ran
        assert code.co_filename.endswith(str(module)), module


def _probe(path_entry: Path) -> dict:
    # Every file newer than any timestamp .pyc: what a zip's mtimes can do to one.
    later = (path_entry / "memlayer" / "__init__.py").stat().st_mtime + 3600
    for file in path_entry.rglob("*"):
        os.utime(file, (later, later))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "LOG_LEVEL": "ERROR"}
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path[0] = {str(path_entry)!r}\n{PROBE}"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_module_of_the_layer_imports_without_compiling(layer: Path) -> None:
    probe = _probe(layer)
    assert Path(probe["file"]).is_relative_to(layer)
    assert probe["modules"] > 50
    assert probe["compiled"] == []


def test_the_source_tree_compiles_every_module_at_import(scratch: Path) -> None:
    # The probe's control: without the build, each module is compiled at each import.
    probe = _probe(scratch)
    assert Path(probe["file"]).is_relative_to(scratch)
    assert len(probe["compiled"]) == probe["modules"]
