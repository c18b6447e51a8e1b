"""A project's image folder moved (another disk, a renamed folder): `init
--moved`, `move_images` in Python and the Project page's form check that the
new place holds the project's images before the project reads them from
there, and keep every label. Real CIFAR-10 JPEGs, a real SQLite store, and
a real PostgreSQL server for a team project."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

import vaal_core as vc
from vaal_core.data import relocate
from vaal_core.data.images import image_root_problem, load_image
from vaal_core.store import Project

from conftest import CLASSES, make_subset, run_cli


def _json(*args) -> dict:
    return json.loads(run_cli(*args, "--json").stdout)


def _refused(*args) -> str:
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr
    return proc.stderr


def _labeled(tmp_path: Path, small_folder: Path, n: int = 3) -> tuple[Path, list[str]]:
    """A project on `small_folder` with its first `n` images labeled (their folders' classes)."""
    proj = tmp_path / "proj"
    _json("init", proj, "--images", small_folder, "--gold-from-folders")
    paths = sorted(str(p.relative_to(small_folder)) for p in small_folder.rglob("*.jpg"))[:n]
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label"), *[(p, p.split("/")[0]) for p in paths]])
    run_cli("label", proj, "--csv", tmp_path / "labels.csv")
    return proj, paths


def test_init_moved_reads_the_images_from_their_new_place_and_keeps_every_label(tmp_path, small_folder):
    proj, paths = _labeled(tmp_path, small_folder)
    before = Project.open(proj).labels()
    new = tmp_path / "other-disk" / "pictures"
    new.parent.mkdir()
    shutil.move(small_folder, new)

    assert "is missing (moved, renamed or unmounted)" in _json("status", proj)["image_folder_problem"]
    assert "init --images NEW --moved" in run_cli("status", proj).stdout
    said = _refused("init", proj, "--images", new)  # the same command without --moved: refused, with the way out
    assert f"reads images from {small_folder.resolve()}, not {new.resolve()}" in said and "init --moved" in said
    assert Project.open(proj).image_root == small_folder.resolve()

    out = _json("init", proj, "--images", new, "--moved")
    assert out["moved"] == {"old": str(small_folder.resolve()), "new": str(new.resolve()), "images": 200,
                            "found": 200, "hashed": 200}
    assert (out["added"], out["known"], out["missing"]) == (0, 200, 0)
    project = Project.open(proj)
    assert project.image_root == new.resolve() and project.labels() == before  # every label kept
    assert [e["payload"]["to"] for e in project.events("moved")] == [str(new.resolve())]
    assert image_root_problem(project) is None and _json("status", proj)["image_folder_problem"] is None
    item = next(it for it in project.items() if it.path == paths[0])
    assert load_image(project, item)[1] is None  # the original file again, not the cached copy
    text = run_cli("init", proj, "--images", new).stdout  # the new place is the project's folder now
    assert "updated project" in text and "0 missing" in text


def test_a_folder_of_other_images_is_refused_naming_a_file_and_changes_nothing(tmp_path, small_folder, cifar_root):
    proj, _ = _labeled(tmp_path, small_folder)
    swapped = tmp_path / "swapped"
    shutil.copytree(small_folder, swapped)
    victim = sorted((swapped / "cat").iterdir())[4]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same name, same size, other bytes
    victim.write_bytes(bytes(data))
    said = _refused("init", proj, "--images", swapped, "--moved")
    assert f"{victim} is not the image the project has under that name (its bytes differ)" in said

    others = make_subset(cifar_root, tmp_path / "others", per_class=20, offset=100)  # other CIFAR JPEGs
    assert "holds none of the project's 200 images" in _refused("init", proj, "--images", others, "--moved")
    assert "does not exist" in _refused("init", proj, "--images", tmp_path / "nowhere", "--moved")

    project = Project.open(proj)
    assert project.image_root == small_folder.resolve() and not project.events("moved")
    assert len(project.labels()) == 3 and project.status()["missing"] == 0


def test_images_not_at_the_new_place_are_missing_with_their_labels_and_come_back(tmp_path, small_folder):
    proj, paths = _labeled(tmp_path, small_folder)
    new = tmp_path / "renamed"
    small_folder.rename(new)
    gone = [new / paths[0], new / "ship" / sorted(p.name for p in (new / "ship").iterdir())[0]]
    kept = [g.read_bytes() for g in gone]
    for g in gone:
        g.unlink()

    said = run_cli("init", proj, "--images", new, "--moved").stdout
    assert "198 of 200 found there, 198 checked byte for byte; the other 2 are missing (their labels kept" in said
    assert "0 new images, 198 already known, 0 skipped, 2 missing" in said
    project = Project.open(proj)
    assert project.status()["missing"] == 2 and len(project.labels()) == 2  # the gone labeled image: not used now

    for g, data in zip(gone, kept):
        g.write_bytes(data)
    assert _json("init", proj, "--images", new)["missing"] == 0  # a plain rescan brings them back
    assert Project.open(proj).status()["labeled"] == 3  # its label was kept all along


def test_moved_is_for_an_existing_project_and_creates_nothing(tmp_path, small_folder):
    said = _refused("init", tmp_path / "fresh", "--images", small_folder, "--moved")
    assert "no project at" in said and not (tmp_path / "fresh").exists()


def test_python_move_images_and_add_images(tmp_path, small_folder, cifar_root):
    proj, _ = _labeled(tmp_path, small_folder)
    new = small_folder.rename(tmp_path / "elsewhere")
    p = vc.open_project(proj)
    with pytest.raises(vc.BadInput, match="move_images"):  # create_project's exist_ok path says the same
        vc.create_project(proj, images=new, exist_ok=True, progress=False)
    report = p.move_images(new, progress=False)
    assert report["moved"]["found"] == 200 and p.project.image_root == new.resolve()
    assert p.status()["labeled"] == 3

    extra = sorted((cifar_root / "train" / "cat").iterdir())[250]
    shutil.copy(extra, new / "cat" / "extra.jpg")
    grown = p.add_images(progress=False)
    assert (grown["added"], grown["moved"]) == (1, None) and p.status()["items"] == 201


def test_only_a_sample_is_read_whole(tmp_path, small_folder):
    proj, _ = _labeled(tmp_path, small_folder, n=0)
    copy = shutil.copytree(small_folder, tmp_path / "copy")  # a copy on a faster disk: the original stays
    found = relocate.check(Project.open(proj), copy, hashed=10)
    assert (found.images, found.found, found.hashed) == (200, 200, 10)
    assert Project.open(proj).image_root == small_folder.resolve()  # check() writes nothing


def test_a_team_project_moves_its_images_on_the_server(tmp_path, small_folder, pg_url):
    proj = tmp_path / "team"
    run_cli("init", proj, "--images", small_folder, "--classes", ",".join(CLASSES), "--db", pg_url)
    new = small_folder.rename(tmp_path / "mounted")
    out = _json("init", proj, "--images", new, "--moved")
    assert out["moved"]["found"] == 200 and out["status"]["backend"] == "postgresql"
    project = Project.open(proj)
    assert project.image_root == new.resolve() and [e["payload"]["from"] for e in project.events("moved")] == \
        [str(small_folder.resolve())]


def test_the_notebook_labeler_shows_the_originals_again_once_told_where_they_are(tmp_path, small_folder):
    from vaal_core.notebook.session import LabelSession

    proj, _ = _labeled(tmp_path, small_folder, n=0)
    p = vc.open_project(proj)
    session = LabelSession(p.project)
    first = p.project.items()[0].id
    assert session.picture(first, 128)[1] is None  # the original file
    new = small_folder.rename(tmp_path / "moved")
    session = LabelSession(p.project)
    assert "showing the cached copy" in session.picture(first, 128)[1]
    p.move_images(new, progress=False)
    assert session.picture(first, 128)[1] is None  # the stand-in was not kept: the original from its new place
