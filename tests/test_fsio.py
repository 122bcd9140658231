"""common.fsio: atomic writes keep the previous file on failure and give files the usual permissions."""
from __future__ import annotations

import os

import pytest

from netaug_mcu.common.errors import UserError
from netaug_mcu.common.fsio import atomic_write, atomic_write_with


def test_new_file_gets_umask_permissions_and_replacing_keeps_them(tmp_path):
    p = tmp_path / "out.json"
    atomic_write(p, "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~umask
    os.chmod(p, 0o640)
    atomic_write(p, "[]")
    assert os.stat(p).st_mode & 0o777 == 0o640 and p.read_text() == "[]"


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "model.tflite"
    atomic_write(p, b"old")

    def broken(fh):
        fh.write(b"half")
        raise OSError(28, "No space left on device")
    with pytest.raises(UserError, match="No space left on device"):
        atomic_write_with(p, broken)
    assert p.read_bytes() == b"old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["model.tflite"]
