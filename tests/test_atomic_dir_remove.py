"""Deleting a build folder is itself killable: whenever the writer dies during ``remove``,
what is left either is gone or still carries the marker, so the next run cleans it up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cimc.build import atomic_dir


class Killed(BaseException):
    """Stands in for SIGKILL: nothing catches it."""


class Listing(list[os.DirEntry[str]]):
    """A directory listing that is also its own context manager, like ``os.scandir``'s."""

    def __enter__(self) -> Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def marked_folder(parent: Path, files: int) -> Path:
    """A writer's leftover: 2·files + 1 files (the marker among them) in two folders."""
    folder = parent / f".cimc-tmp-{atomic_dir._HOST}-{dead_pid()}-x"
    folder.mkdir()
    (folder / "sub").mkdir()
    for i in range(files):
        (folder / f"f{i}.json").write_text("{}")
        (folder / "sub" / f"g{i}").write_text("x")
    atomic_dir.mark(folder)
    return folder


@pytest.mark.parametrize("deaths", range(13))  # every unlink but the last
def test_remove_killed_after_any_unlink_leaves_a_marked_folder_or_none(tmp_path: Path, deaths: int,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    folder = marked_folder(tmp_path, files=6)
    real_unlink, count = os.unlink, [0]

    def dying_unlink(*args: object, **kwargs: object) -> None:
        if count[0] == deaths:
            raise Killed
        count[0] += 1
        real_unlink(*args, **kwargs)  # type: ignore[arg-type]

    real_scandir = os.scandir

    def marker_first(*args: object) -> Listing:
        """``os.scandir`` listing the marker first: the worst order a file system may give."""
        with real_scandir(*args) as entries:  # type: ignore[call-overload]
            return Listing(sorted(entries, key=lambda e: (e.name != atomic_dir.MARKER, e.name)))

    monkeypatch.setattr(os, "unlink", dying_unlink)
    monkeypatch.setattr(os, "scandir", marker_first)
    with pytest.raises(Killed):
        atomic_dir.remove(folder)
    monkeypatch.undo()
    assert folder.exists() and atomic_dir.is_marked(folder)
    assert atomic_dir.clean_stale(tmp_path) == [folder] and not folder.exists()


def test_remove_deletes_everything(tmp_path: Path) -> None:
    folder = marked_folder(tmp_path, files=3)
    atomic_dir.remove(folder)
    assert list(tmp_path.iterdir()) == []


def test_remove_of_a_link_deletes_the_link_not_its_target(tmp_path: Path) -> None:
    target = marked_folder(tmp_path, files=2)
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    atomic_dir.remove(link)
    assert not os.path.lexists(link) and len(list(target.iterdir())) == 4
