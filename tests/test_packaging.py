"""The plugin is installable and napari finds its manifest (editable install and built wheel)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_npe2_validate():
    npe2 = shutil.which("npe2") or str(Path(sys.executable).with_name("npe2"))
    result = subprocess.run([npe2, "validate", "napari-domaingen"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_manifest_has_one_source_of_truth():
    packaged = ROOT / "src" / "napari_domaingen" / "napari.yaml"
    assert packaged.is_symlink() and packaged.resolve() == (ROOT / "napari.yaml").resolve()


def test_installed_manifest_is_found_by_npe2():
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest("napari-domaingen")
    assert manifest.contributions.readers and manifest.contributions.writers and manifest.contributions.sample_data


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to copy the tracked tree")
def test_wheel_contains_the_manifest(tmp_path):
    pytest.importorskip("build")
    out = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "napari_domaingen/napari.yaml" in names
        # the shipped anatomy/style model, and no data files besides it (never ../shared images)
        assert "napari_domaingen/weights/dgm-small-histology.pt" in names
        assert archive.getinfo("napari_domaingen/weights/dgm-small-histology.pt").file_size <= 20 * 2**20
        data = [n for n in names if n.startswith("napari_domaingen/") and not n.endswith((".py", ".yaml", ".md"))]
        assert data == ["napari_domaingen/weights/dgm-small-histology.pt"], data
        manifest = yaml.safe_load(archive.read("napari_domaingen/napari.yaml"))
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "napari_domaingen:napari.yaml" in archive.read(entry_points).decode()
    assert manifest == yaml.safe_load((ROOT / "napari.yaml").read_text())
