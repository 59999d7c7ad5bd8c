"""Make the documentation's screenshots of the viewing conventions and the dock layout with a real napari window.

* ``docs/images/radiological_view.png`` — the brain sample (MNI152 T1 + tissue labels, opened as File ▸ Open
  Sample does) in the three 2D views napari offers, with the radiological convention this plugin sets.
* ``docs/images/maskgen_train.png`` — the training panel of *MaskGen — train* after a short ERM run with a
  validation pair on a region of the brain sample (loss, validation Dice, checkpoint and best-model lines).
* ``docs/images/swap.png`` — *Anatomy / style swap* docked in a 1920 × 1080 window with the shipped model and its
  default rendering options: the IHC sample (anatomy) and its H&E-like restain (style, mean tissue style); the
  outputs moved beside their sources for the picture (the widget keeps them on their source grids).
* ``docs/images/swap_slide.png`` — the same dock with a multiscale slide (a 3072 px pyramidal TIFF made from the
  IHC sample) as anatomy: its whole-slide controls, and the slide swapped at full resolution into an OME-Zarr that
  opened as a multiscale layer (moved beside the slide for the picture).
* ``docs/images/segment_statistics.png`` — *MaskGen — segment*'s statistics table for the brain sample's tissue
  labels with the T1's intensities (the table every segmentation fills; any Labels layer can be chosen).
* ``docs/images/batch.png`` — the *Batch* dock after ``compare`` (T1 vs FLAIR) over a small cohort made from
  ../shared (BraTS and TCGA crops, a case without FLAIR, a cut file), with one case opened by double-click.
* ``docs/images/register.png`` — *Register* docked in a 1920 × 1080 window after registering a FLAIR moved by a
  known affine and smooth deformation (made from ../shared's TCGA case) back onto its T1: fixed in green, moved in
  magenta, the moved tumour labels.
* ``docs/images/pacs.png`` — *PACS* docked in a 1920 × 1080 window, talking to a real Orthanc started for the
  picture (as the tests start it): a search, a study's series, the T1 opened from the server, tumour labels drawn
  on it and sent back as DICOM-SEG (the stored SEG's UIDs in the dock).
* ``docs/images/window_1080.png`` — a 1920 × 1080 napari window with *MaskGen — train* and *MaskGen — segment*
  docked beside the brain sample: the docks scroll instead of making the window taller than the screen.

Needs a display; on a headless machine: ``xvfb-run -s "-screen 0 1920x1080x24" python scripts/docs_screenshots.py``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

PLUGIN = "napari-domaingen"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"
VIEWS = {  # napari dims order → (title, letters on the (top, bottom, left, right) edges of the picture)
    (0, 1, 2): ("axial: anterior up, the patient's right on the left", ("A", "P", "R", "L")),
    (1, 0, 2): ("coronal: superior up, the patient's right on the left", ("S", "I", "R", "L")),
    (2, 0, 1): ("sagittal: superior up, anterior on the left", ("S", "I", "A", "P")),
}


def radiological_view(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(900, 900)
    viewer.open_sample(PLUGIN, "brain_mri")
    viewer.layers[-1].opacity = 0.35
    shots = []
    for order in VIEWS:
        viewer.dims.order = order
        viewer.dims.set_point(order[0], 0.0 if order[0] != 2 else 20.0)  # through the middle (R 20 mm: one hemisphere)
        viewer.reset_view()
        shots.append(viewer.screenshot(canvas_only=True, flash=False)[..., :3])
    viewer.close()
    figure, axes = plt.subplots(1, 3, figsize=(15, 5.6), dpi=100)
    for ax, shot, (title, (top, bottom, left, right)) in zip(axes, shots, VIEWS.values()):
        rows, cols = np.nonzero(shot.mean(-1) > 8)
        crop = shot[max(rows.min() - 20, 0) : rows.max() + 20, max(cols.min() - 40, 0) : cols.max() + 40]
        ax.imshow(crop)
        ax.set_title(title, fontsize=11)
        ax.set_xticks([]), ax.set_yticks([])
        h, w = crop.shape[:2]
        style = {"color": "yellow", "fontsize": 15, "fontweight": "bold", "ha": "center", "va": "center"}
        ax.text(w / 2, 14, top, **style), ax.text(w / 2, h - 14, bottom, **style)
        ax.text(16, h / 2, left, **style), ax.text(w - 16, h / 2, right, **style)
    figure.suptitle("napari-domaingen: the brain sample in the radiological view (the default)", fontsize=13)
    figure.tight_layout()
    figure.savefig(out, facecolor="white")
    print(f"wrote {out}")


def window_1080(out: Path) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1920, 1080)
    viewer.open_sample(PLUGIN, "brain_mri")
    for name in ("MaskGen — train", "MaskGen — segment"):
        viewer.window.add_plugin_dock_widget(PLUGIN, name)
    for _ in range(20):
        QApplication.processEvents()
    assert window.frameGeometry().height() <= 1080, window.frameGeometry()
    window.grab().save(str(out))
    print(f"wrote {out} ({window.width()} × {window.height()} px)")
    viewer.close()


def swap(out: Path) -> None:
    import time

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1920, 1080)
    anatomy, style = viewer.open_sample(PLUGIN, "histology_pair")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Anatomy / style swap")
    widget._anatomy.value, widget._style.value, widget._mode.value = anatomy, style, "mean"
    widget.swap()
    while widget.worker is None or widget.worker.is_running or widget.last_outcome is None:
        QApplication.processEvents()
        time.sleep(0.02)
    a, s = anatomy.name, style.name
    rows = [
        [anatomy, f"{a} reconstruction", f"{a} anatomy × {s} style"],
        [style, f"{s} reconstruction", f"{s} anatomy × {a} style"],
    ]
    height, width = (1.05 * n * sc for n, sc in zip(anatomy.data.shape[:2], anatomy.scale))
    for row, names in enumerate(rows):
        for column, name in enumerate(names):
            layer = name if not isinstance(name, str) else viewer.layers[name]
            layer.translate = (row * height, column * width)
    viewer.reset_view()
    for _ in range(20):
        QApplication.processEvents()
    assert window.frameGeometry().height() <= 1080, window.frameGeometry()
    window.grab().save(str(out))
    print(f"wrote {out}: {widget._status.value}")
    viewer.close()


def swap_slide(out: Path, work: Path) -> None:
    """The swap dock's whole-slide controls: a 3072 × 3072 px pyramidal TIFF (the IHC sample mirrored into a
    mosaic, 0.5 µm/px) swapped at full resolution into an OME-Zarr with the H&E-like restain's mean style; the
    output opened as a multiscale layer, moved beside the slide for the picture."""
    import time

    import napari
    import tifffile
    from qtpy.QtWidgets import QApplication

    from napari_domaingen.io import samples

    ihc = samples.ihc().data
    tile = np.concatenate([np.concatenate([ihc, ihc[:, ::-1]], 1), np.concatenate([ihc[::-1], ihc], 1)], 0)
    base = np.ascontiguousarray(np.tile(tile, (4, 4, 1))[:3072, :3072])
    path = work / "ihc_slide.tif"
    options = {"photometric": "rgb", "tile": (256, 256), "compression": "zlib"}
    with tifffile.TiffWriter(path) as tif:
        tif.write(base, subifds=2, resolution=(2e4, 2e4), resolutionunit="CENTIMETER", **options)
        for k in (2, 4):
            tif.write(base[::k, ::k].copy(), subfiletype=1, **options)
    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1920, 1080)
    (slide,) = viewer.open(str(path), plugin=PLUGIN)
    _, style = viewer.open_sample(PLUGIN, "histology_pair")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Anatomy / style swap")
    widget._anatomy.value, widget._style.value, widget._mode.value = slide, style, "mean"
    style.translate = (0, -1.1 * style.data.shape[1] * style.scale[1])
    widget.slide.output.value = work / "ihc_slide-swapped.ome.zarr"
    widget.slide.block = 1024
    widget.slide.start()
    while widget.runner.is_running or widget.slide.last_result is None:
        QApplication.processEvents()
        time.sleep(0.02)
        if widget.runner.outcome is not None and widget.runner.outcome.error is not None:
            raise widget.runner.outcome.error
    output = viewer.layers[-1]
    output.translate = (0, 1.05 * 3072 * 0.5)
    viewer.reset_view()
    for _ in range(40):
        QApplication.processEvents()
        time.sleep(0.02)
    assert window.frameGeometry().height() <= 1080, window.frameGeometry()
    window.grab().save(str(out))
    print(f"wrote {out}: {widget._status.value}")
    viewer.close()


def segment_statistics(out: Path) -> None:
    """The segment dock's statistics panel on the brain sample: tissue labels (names from the sample's features
    table) and the T1 intensities, in a 1920 × 1080 window."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1920, 1080)
    image, labels = viewer.open_sample(PLUGIN, "brain_mri")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "MaskGen — segment")
    widget.stats.show_for(labels, image)
    for _ in range(20):
        QApplication.processEvents()
    widget.stats.native.grab().save(str(out))
    print(f"wrote {out}: " + "; ".join(f"{r.name} {r.volume_mm3 / 1000:.1f} ml" for r in widget.stats.rows))
    viewer.close()


def batch(out: Path, work: Path) -> None:
    """The Batch dock after a compare batch over four cases made from ../shared (skipped when it is absent)."""
    import shutil
    import time

    import napari
    import nibabel as nib
    import torch
    from qtpy.QtWidgets import QApplication

    shared = Path(__file__).resolve().parents[2] / "shared"
    if not (shared / "fixtures" / "anatomix_reference.pt").is_file():
        print(f"skipped {out}: ../shared not available")
        return
    cohort = work / "cohort"
    pairs = {
        "BraTS-GLI-00001": (
            "brats23-gli-00001-000",
            "BraTS-GLI-00001-000-t1n.nii.gz",
            "BraTS-GLI-00001-000-t2f.nii.gz",
        ),
        "TCGA-DU-7294": ("tcga-du-7294", "TCGA-DU-7294_t1_bet.nii.gz", "TCGA-DU-7294_fla_bet.nii.gz"),
    }
    for name, (folder, t1, flair) in pairs.items():
        for file, tag in ((t1, "t1"), (flair, "flair")):
            image = nib.load(shared / "data" / "mri" / folder / file)
            crop = image.slicer[60:180, 60:180, 40:120]
            (cohort / name).mkdir(parents=True, exist_ok=True)
            nib.save(
                nib.Nifti1Image(crop.get_fdata(dtype="float32"), crop.affine), cohort / name / f"{name}_{tag}.nii.gz"
            )
    (cohort / "TCGA-T1-only").mkdir()
    shutil.copy(cohort / "TCGA-DU-7294" / "TCGA-DU-7294_t1.nii.gz", cohort / "TCGA-T1-only" / "x_t1.nii.gz")
    weights = work / "anatomix.pth"
    torch.save(torch.load(shared / "fixtures" / "anatomix_reference.pt", weights_only=True)["state_dict"], weights)

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1920, 1080)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Batch")
    widget._cohort.value, widget._out.value, widget._weights.value = cohort, work / "out", str(weights)
    widget._workers.value = 2
    widget.run()
    while "cases:" not in widget._status.value:
        QApplication.processEvents()
        time.sleep(0.05)
    widget.open_case("TCGA-DU-7294")
    for layer in viewer.layers:  # the two renderings and the map side by side, as a user compares them
        layer.visible = True
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
    grid.enabled, grid.shape = True, (1, 3)
    viewer.reset_view()
    for _ in range(30):
        QApplication.processEvents()
    viewer.window._qt_window.grab().save(str(out))
    print(f"wrote {out}: {widget._status.value}")
    viewer.close()


def register(out: Path, work: Path) -> None:
    """The Register dock after a default run on the known-deformation TCGA case (skipped without ../shared)."""
    import sys
    import time

    import napari
    from qtpy.QtWidgets import QApplication

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "mri" / "tcga-du-7294"
    if not shared.is_dir():
        print(f"skipped register: {shared} not found")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _register_cases import make_case

    t1 = shared / "TCGA-DU-7294_t1_bet.nii.gz"
    labels = shared / "tcga-du-7294_seg-fusion-simple.nii.gz"
    moving, moving_labels, _ = make_case(t1, shared / "TCGA-DU-7294_fla_bet.nii.gz", labels, work)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1920, 1080)
    fixed = viewer.open(str(t1), plugin=PLUGIN)[0]
    flair = viewer.open(str(moving), plugin=PLUGIN)[0]
    seg = viewer.open(str(moving_labels), plugin=PLUGIN)[0]
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Register")
    widget._fixed.value, widget._moving.value, widget._labels.value = fixed, flair, seg
    widget.run()
    while widget.runner.outcome is None or widget.worker.is_running:
        QApplication.processEvents()
        time.sleep(0.05)  # an idle GUI thread, as a person's: a busy loop here would take a core from the job
    flair.visible = seg.visible = False
    moved_labels = viewer.layers[f"{seg.name} on {fixed.name}"]
    centre = np.argwhere(np.asarray(moved_labels.data) > 0).mean(0)
    viewer.dims.set_point(0, float(moved_labels.data_to_world(centre)[0]))
    for _ in range(20):
        QApplication.processEvents()
    napari.utils.io.imsave(str(out), viewer.screenshot(canvas_only=False, flash=False))
    print(f"wrote {out}: {widget._summary.value}")
    viewer.close()


def pacs(out: Path, work: Path) -> None:
    """The PACS dock after search, open and send against a real Orthanc (skipped without it or ../shared)."""
    import os
    import sys
    import time

    import napari
    import nibabel as nib
    from qtpy.QtWidgets import QApplication

    from napari_domaingen.io.nifti import read_nifti

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests._orthanc import PASSWORD, USER, start_orthanc, stop_orthanc, tcga_crop, write_study

    try:
        server, process = start_orthanc(work)
    except FileNotFoundError as exc:
        print(f"skipped {out}: {exc}")
        return
    os.environ.update(DOMAINGEN_DICOMWEB_USER=USER, DOMAINGEN_DICOMWEB_PASSWORD=PASSWORD)
    os.environ["DOMAINGEN_DICOMWEB_CACHE"] = str(work / "cache")
    try:
        for patient, date in (("TCGA-DU-7294", "20260312"), ("TCGA-DU-7294", "20260918"), ("BRAIN-0002", "20261104")):
            written = write_study(work / patient / date, patient, date=date, accession=f"A{date}", size=64)
            server.upload([f for _, files, _ in written.values() for f in files])
        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1920, 1080)
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "PACS")

        def wait() -> None:
            while widget.runner.outcome is None or widget.runner.is_running:
                QApplication.processEvents()
                time.sleep(0.05)

        widget._server.value, widget._patient_id.value = server.url, "TCGA*"
        widget.search()
        wait()
        widget.study_table.selectRow(0)
        wait()
        widget.series_table.selectRow(0)
        widget.open_selected()
        wait()
        image = viewer.layers["T1 axial"]
        crop = tcga_crop(64)  # the tumour labels on the T1's grid: display order as every reader gives it
        nib.save(nib.Nifti1Image(np.asarray(crop["labels"].dataobj).astype(np.uint8), crop["T1"].affine),
                 work / "tumour.nii.gz")  # fmt: skip
        tumour = read_nifti(work / "tumour.nii.gz", as_label=True).data
        geometry = {"scale": image.scale, "translate": image.translate, "affine": image.affine}
        labels = viewer.add_labels(tumour, name="tumour (drawn)", **geometry)
        widget._labels.value = labels
        widget.send()
        wait()
        viewer.dims.set_point(0, float(labels.data_to_world(np.argwhere(labels.data > 0).mean(0))[0]))
        for _ in range(20):
            QApplication.processEvents()
        napari.utils.io.imsave(str(out), viewer.screenshot(canvas_only=False, flash=False))
        print(f"wrote {out}: {widget._status.value}; SEG series {widget._seg_series.value}")
        viewer.close()
    finally:
        stop_orthanc(process)


def maskgen_train(out: Path, work: Path) -> None:
    """The train dock after a short ERM run (no weights needed) on a region of the brain sample with a validation
    pair: the loss curve, the validation Dice points, the checkpoint and best-model lines, the status."""
    import time

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1920, 1080)
    image, labels = viewer.open_sample(PLUGIN, "brain_mri")
    region = (slice(40, 104), slice(60, 124), slice(40, 104))
    image.data, labels.data = np.ascontiguousarray(image.data[region]), np.ascontiguousarray(labels.data[region])
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "MaskGen — train")
    widget._method.value, widget._preset.value, widget._crop.value = "erm", "cpu", 32
    widget._steps.value, widget._batch.value, widget._lr.value, widget._device.value = 24, 2, 3e-3, "cpu"
    widget._checkpoint_every.value, widget._validate_every.value, widget._patience.value = 8, 4, 3
    widget._val_image.value, widget._val_labels.value = image, labels
    widget._output.value = work / "brain_erm.pt"
    widget.start()
    while widget.worker is None or widget.worker.is_running or not widget._start.enabled:
        QApplication.processEvents()
        time.sleep(0.02)
    for _ in range(20):
        QApplication.processEvents()
    panel = widget.training
    panel.grab().save(str(out))
    print(f"wrote {out}: {widget._status.value}")
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DOCS), help="folder for the PNG files (default: docs/images)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="make only these pictures, e.g. batch swap")
    args = parser.parse_args()
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    plain = {
        "radiological_view": radiological_view,
        "window_1080": window_1080,
        "segment_statistics": segment_statistics,
        "swap": swap,
    }
    with_work = {
        "swap_slide": swap_slide,
        "maskgen_train": maskgen_train,
        "batch": batch,
        "register": register,
        "pacs": pacs,
    }
    for name in args.only or [*plain, *with_work]:
        if name in plain:
            plain[name](folder / f"{name}.png")
        elif name in with_work:
            with tempfile.TemporaryDirectory() as work:
                with_work[name](folder / f"{name}.png", Path(work))
        else:
            parser.error(f"unknown picture {name!r}; choose from {', '.join([*plain, *with_work])}")


if __name__ == "__main__":
    main()
