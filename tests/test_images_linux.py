"""SQL Server on Linux in a disk image: an ext4 volume built at test time
(mkfs.ext4 -d fills it from a folder, no mount needed), bare and behind an
MBR in a QCOW2.  Needs the 'images' extra (dissect.extfs)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import LINUX_LOG
from container_builders import have, mbr_disk, qemu_convert

from forensic.discovery import discover, open_evidence

pytest.importorskip("dissect.extfs", reason="the 'images' extra (dissect.extfs) is not installed")
if not have("mkfs.ext4"):
    pytest.skip("mkfs.ext4 not available (apt-get install e2fsprogs)", allow_module_level=True)


def ext4_volume(path: Path, tree: Path, size_mb: int = 16) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size_mb << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(path)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path


@pytest.fixture
def linux_tree(tmp_path) -> Path:
    tree = tmp_path / "tree"
    (tree / "var" / "opt" / "mssql" / "log").mkdir(parents=True)
    for p in LINUX_LOG.iterdir():
        shutil.copyfile(p, tree / "var" / "opt" / "mssql" / "log" / p.name)
    (tree / "etc").mkdir()
    (tree / "etc" / "hostname").write_text("sql-linux01\n")
    return tree


def test_bare_ext4_volume(tmp_path, linux_tree):
    vol = ext4_volume(tmp_path / "sql-linux01.img", linux_tree)
    found = discover([str(vol)])
    names = sorted(i.display_path for i in found.inputs)
    assert names == [f"{vol}!var/opt/mssql/log/errorlog", f"{vol}!var/opt/mssql/log/errorlog.1"]
    for item in found.inputs:
        with open_evidence(item.path) as fh:
            data = fh.read()
        assert hashlib.sha256(data).digest() == hashlib.sha256(
            (LINUX_LOG / item.display_path.rsplit("/", 1)[1]).read_bytes()).digest()


def test_partitioned_ext4_in_qcow2(tmp_path, linux_tree):
    if not have("qemu-img"):
        pytest.skip("qemu-img not available")
    vol = ext4_volume(tmp_path / "root.vol", linux_tree)
    disk, _offsets = mbr_disk(tmp_path / "disk.raw", [vol])
    (tmp_path / "ev").mkdir()
    qcow = qemu_convert(disk, "qcow2", tmp_path / "ev" / "sql-linux01.qcow2")
    found = discover([str(tmp_path / "ev")])
    assert sorted(i.display_path for i in found.inputs) == [
        f"{qcow}!var/opt/mssql/log/errorlog", f"{qcow}!var/opt/mssql/log/errorlog.1"]
    assert {i.parser_name for i in found.inputs} == {"errorlog"}
