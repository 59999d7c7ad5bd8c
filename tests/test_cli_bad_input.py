"""Every command against every kind of bad input (issue 26): exit status 2 (130 for Ctrl-C), a first line on stderr
that names the file and the problem, no traceback, every input byte for byte unchanged, nothing written outside
``--out``.

The inputs are made here (small synthetic volumes, a DICOM series, PNGs from scikit-image, a model trained for one
step, random anatomix weights), so the suite needs nothing from ../shared.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_domaingen.cli import main

from .io.test_dicom import write_series

SHAPE = (32, 32, 32)
AFFINE = np.array([[1.2, 0, 0, -20.0], [0, 1.0, 0, -16.0], [0, 0, 1.5, -24.0], [0, 0, 0, 1]])
#: words of which at least one names each kind of problem in the first line (lower case)
PROBLEM = {
    "missing": ("no such",),
    "folder": ("folder", "directory"),
    "fifo": ("pipe", "fifo"),
    "empty": ("empty", "0 bytes", "no data", "not a", "truncated", "too short", "cannot be read", "unreadable"),
    "truncated": ("truncated", "not a", "corrupt", "cannot be read", "unreadable", "incomplete", "end of"),
    "garbage": ("not a", "cannot be read", "unreadable", "not recognised", "unknown", "invalid", "no dicom"),
    "nan": ("nan", "not finite", "non-finite"),
    "fractional": ("fraction", "whole number", "integer", "non-integer"),
    "negative": ("negative", "below 0", "< 0", "≥ 0"),
    "huge": ("65535", "too large", "beyond", "exceed", "at most", "huge", "maximum"),
    "off-grid": ("grid",),
    "overwrite": ("overwrite", "would hold", "holds the", "inside the input", "input folder", "lies inside"),
    "cohort": ("cohort",),
    "case-name": ("case name",),
    "read-only": ("read-only", "cannot be written", "permission"),
    "zip-member": ("outside the archive", "unsafe", "..", "member"),
    "vr": ("control", "newline", "character", "64"),
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _volume(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@dataclass
class Data:
    root: Path  # every input lives below it
    files: dict[str, Path]

    def __getitem__(self, key: str) -> str:
        return str(self.files[key])


def _read_only_folder(path: Path) -> Path | None:
    """A read-only folder: a read-only tmpfs mounted there (root), or mode 0o555 (others); ``None`` if neither
    holds here."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True)
        return path if done.returncode == 0 else None
    path.chmod(0o555)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Data:
    import torch
    from skimage import data as skdata
    from skimage.io import imsave

    from napari_domaingen.models.anatomix import AnatomixUNet

    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in SHAPE), indexing="ij")
    radius = np.sqrt(x**2 + y**2 + z**2)
    t1 = (1000 * np.exp(-2 * radius**2) + rng.normal(0, 20, SHAPE)).astype(np.float32)
    labels = ((radius < 0.7).astype(np.uint8) + (radius < 0.35)).astype(np.uint8)
    f: dict[str, Path] = {}
    f["t1"] = _volume(root / "t1.nii.gz", t1)
    f["flair"] = _volume(root / "flair.nii.gz", (t1.max() - t1).astype(np.float32))
    f["labels"] = _volume(root / "labels.nii.gz", labels)
    f["off-grid"] = _volume(root / "offgrid_labels.nii.gz", labels[:24])
    f["off-grid-image"] = _volume(root / "offgrid_t1.nii.gz", t1[:24])
    nan = labels.astype(np.float32)
    nan[3, 3, 3] = np.nan
    f["nan"] = _volume(root / "nan_labels.nii.gz", nan)
    f["fractional"] = _volume(root / "fractional_labels.nii.gz", labels.astype(np.float32) * 0.5)
    f["negative"] = _volume(root / "negative_labels.nii.gz", labels.astype(np.int16) - 1)
    huge = labels.astype(np.uint32)
    huge[huge == 2] = 4_000_000_000
    f["huge"] = _volume(root / "huge_labels.nii.gz", huge)
    good = f["t1"].read_bytes()
    for suffix, stem in ((".nii.gz", "volume"), (".png", "image"), (".pt", "model")):
        f[f"missing{suffix}"] = root / f"missing_{stem}{suffix}"
        f[f"folder{suffix}"] = root / f"folder_{stem}{suffix}"
        f[f"folder{suffix}"].mkdir()
        f[f"fifo{suffix}"] = root / f"fifo_{stem}{suffix}"
        os.mkfifo(f[f"fifo{suffix}"])
        f[f"empty{suffix}"] = root / f"empty_{stem}{suffix}"
        f[f"empty{suffix}"].write_bytes(b"")
        f[f"garbage{suffix}"] = root / f"garbage_{stem}{suffix}"
        f[f"garbage{suffix}"].write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    f["truncated.nii.gz"] = root / "truncated_volume.nii.gz"
    f["truncated.nii.gz"].write_bytes(good[: len(good) // 2])
    ihc = skdata.immunohistochemistry()
    f["anatomy"] = root / "anatomy.png"
    imsave(f["anatomy"], ihc[:160, :160], check_contrast=False)
    f["style"] = root / "style.png"
    imsave(f["style"], ihc[200:360, 200:360], check_contrast=False)
    png = f["anatomy"].read_bytes()
    f["truncated.png"] = root / "truncated_image.png"
    f["truncated.png"].write_bytes(png[: len(png) // 3])
    uid, slices = write_series(root / "series", np.round(t1).astype(np.int16), AFFINE, modality="MR")
    f["series"], f["slice"] = root / "series", slices[1]
    f["series-labels"] = _volume(root / "series_labels.nii.gz", labels)
    f["no-dicom"] = root / "no_dicom"
    f["no-dicom"].mkdir()
    (f["no-dicom"] / "notes.txt").write_text("not DICOM\n")
    f["zip"] = root / "traversal.zip"
    with zipfile.ZipFile(f["zip"], "w") as archive:
        for number, path in enumerate(slices[:4]):
            archive.write(path, f"../escape_{number}.dcm" if number == 2 else path.name)
    weights = AnatomixUNet()
    f["weights"] = root / "anatomix_random.pth"
    torch.save(weights.state_dict(), f["weights"])
    # a real MaskGen/ERM model file, trained for one step on the synthetic volume
    f["model"] = root / "erm.pt"
    train = ["train", "--image", str(f["t1"]), "--label", str(f["labels"]), "--out", str(f["model"])]
    fast = ["--preset", "cpu", "--crop", "32", "--batch-size", "1", "--steps", "1", "--baseline", "erm"]
    assert main([*train, *fast, "--no-augment", "--quiet"]) == 0
    for extra in ("erm.best.pt", "erm.history.csv"):
        (root / extra).unlink(missing_ok=True)
    f["cohort"] = root / "cohort"
    for case in ("case1", "case2"):
        (f["cohort"] / case).mkdir(parents=True)
        _volume(f["cohort"] / case / "t1.nii.gz", t1)
        _volume(f["cohort"] / case / "labels.nii.gz", labels)
    for name, row in (
        ("traversal", "../../escaped_case"),
        ("absolute", str(root / "absolute_case")),
        ("dot", "."),
        ("control", "bad\tname"),
    ):
        f[f"manifest-{name}"] = root / f"manifest_{name}.csv"
        f[f"manifest-{name}"].write_text(f"case,T1\n{row},{f['t1']}\nok,{f['t1']}\n")
    return Data(root, f)


@dataclass(frozen=True)
class Bad:
    """One bad call: ``argv``, a command line whose ``<key>`` fields are the data's paths (``<out>``: the output
    folder); the first line must name ``names`` (a data key, or ``"out"``) and one word of ``PROBLEM[problem]``."""

    id: str
    argv: str | tuple[str, ...]
    names: str
    problem: str
    code: int = 2

    def command_line(self, data: Data, out: Path) -> list[str]:
        words = self.argv.split() if isinstance(self.argv, str) else self.argv
        paths = {**{key: str(path) for key, path in data.files.items()}, "out": str(out)}
        return [re.sub(r"<([\w.-]+)>", lambda m: paths[m.group(1)], word) for word in words]


SEGMENT = "segment @ --model <model> --out <out>/l.nii.gz --quiet"
FEATURES = "features @ --out <out>/f.nii.gz --weights <weights> --quiet"
COMPARE = "compare <t1> @ --out <out> --weights <weights> --quiet"
STATS = "stats @ --out <out>/s.csv"
EXPORT = "export @ --reference <series> --out <out>/seg.dcm"
TRAIN = "train --image <t1> --label <labels> --out <out>/m.pt --steps 1 --quiet"
BATCH = "batch segment @ --out <out> --contrast T1 --model <model> --workers 1"


def fill(template: str, key: str) -> str:
    """``template`` with ``@`` standing for the data path ``key``."""
    return template.replace("@", f"<{key}>")


def _cases() -> list[Bad]:
    cases: list[Bad] = []
    for kind in ("missing", "folder", "fifo", "empty", "truncated", "garbage"):
        v, png = f"{kind}.nii.gz", f"{kind}.png"
        cases += [
            Bad(f"features-{kind}", fill(FEATURES, v), v, kind),
            Bad(f"segment-{kind}", fill(SEGMENT, v), v, kind),
            Bad(f"compare-{kind}", fill(COMPARE, v), v, kind),
            Bad(f"stats-{kind}", fill(STATS, v), v, kind),
            Bad(f"export-{kind}", fill(EXPORT, v), v, kind),
            Bad(f"train-{kind}", TRAIN.replace("<t1>", f"<{v}>"), v, kind),
            Bad(f"info-{kind}", fill("info @", v), v, kind),
            Bad(f"swap-{kind}", fill("swap @ <style> --out <out>/s.png", png), png, kind),
            Bad(f"swap-style-{kind}", fill("swap <anatomy> @ --out <out>/s.png", png), png, kind),
            Bad(f"swap-train-{kind}", fill("swap-train @ --out <out>/m.pt --steps 1 --quiet", png), png, kind),
        ]
    for kind in ("missing", "fifo", "empty", "garbage"):
        pt = f"{kind}.pt"
        cases += [
            Bad(f"segment-model-{kind}", SEGMENT.replace("<model>", f"<{pt}>").replace("@", "<t1>"), pt, kind),
            Bad(f"train-init-{kind}", f"{TRAIN} --init <{pt}>", pt, kind),
            Bad(f"pretrain-init-{kind}", f"pretrain-extractor --init <{pt}> --out <out>/x.pt --quiet", pt, kind),
        ]
    for kind in ("nan", "fractional", "negative", "off-grid"):
        cases += [
            Bad(f"stats-labels-{kind}", fill(STATS, kind) + " --image <t1>", kind, kind),
            Bad(f"export-labels-{kind}", fill(EXPORT, kind), kind, kind),
            Bad(f"train-labels-{kind}", TRAIN.replace("<labels>", f"<{kind}>"), kind, kind),
        ]
    export = fill(EXPORT, "series-labels")
    names = (*export.split(), "--class-names")
    cases += [
        Bad("export-labels-huge", fill(EXPORT, "huge"), "huge", "huge"),
        Bad("compare-off-grid", fill(COMPARE, "off-grid-image"), "off-grid-image", "off-grid"),
        Bad("export-class-name-newline", (*names, "background,line1\nline2,b"), "out", "vr"),
        Bad("export-class-name-65", (*names, "background," + "x" * 65), "out", "vr"),
        Bad("convert-missing", "convert <missing.nii.gz> --out <out>/c.nii.gz", "missing.nii.gz", "missing"),
        Bad("convert-fifo", "convert <fifo.nii.gz> --out <out>/c.nii.gz", "fifo.nii.gz", "fifo"),
        Bad("convert-no-dicom", "convert <no-dicom> --out <out>/c.nii.gz", "no-dicom", "garbage"),
        Bad("convert-zip-traversal", "convert <zip> --out <out>/c.nii.gz", "zip", "zip-member"),
        # --out equal to an input, or inside an input DICOM series
        Bad("stats-out-is-input", "stats <labels> --out <labels>", "labels", "overwrite"),
        Bad("export-out-in-series", export.replace("<out>", "<series>"), "series", "overwrite"),
        Bad("export-out-is-slice", export.replace("<out>/seg.dcm", "<slice>"), "slice", "overwrite"),
        Bad("segment-out-is-input", fill(SEGMENT, "t1").replace("<out>/l.nii.gz", "<t1>"), "t1", "overwrite"),
        Bad("segment-stats-is-model", fill(SEGMENT, "t1") + " --stats <model>", "model", "overwrite"),
        Bad(
            "segment-out-in-series",
            fill(SEGMENT, "series").replace("<out>/l.nii.gz", "<series>/s.dcm"),
            "series",
            "overwrite",
        ),
        Bad("features-out-is-input", fill(FEATURES, "t1").replace("<out>/f.nii.gz", "<t1>"), "t1", "overwrite"),
        Bad("convert-out-in-series", "convert <series> --out <series>/x.nii.gz", "series", "overwrite"),
        Bad("swap-out-is-input", "swap <anatomy> <style> --out <style>", "style", "overwrite"),
        Bad(
            "swap-train-out-is-input", "swap-train <anatomy> --out <anatomy> --steps 1 --quiet", "anatomy", "overwrite"
        ),
        Bad("train-out-is-label", TRAIN.replace("<out>/m.pt", "<labels>"), "labels", "overwrite"),
        Bad("train-out-is-init", TRAIN.replace("<out>/m.pt", "<model>") + " --init <model>", "model", "overwrite"),
        # cohorts: the batch folder, case names
        Bad("batch-out-is-cohort", fill(BATCH, "cohort").replace("<out>", "<cohort>"), "cohort", "cohort"),
        Bad("batch-out-in-case", fill(BATCH, "cohort").replace("<out>", "<cohort>/case1"), "cohort", "cohort"),
    ]
    for name in ("traversal", "absolute", "dot", "control"):
        key = f"manifest-{name}"
        cases += [
            Bad(f"cohort-case-{name}", f"cohort <{key}>", key, "case-name"),
            Bad(f"batch-case-{name}", fill(BATCH, key), key, "case-name"),
        ]
    return cases


CASES = _cases()


@contextlib.contextmanager
def _deadline(seconds: int):
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""

    def expired(*_):
        raise TimeoutError(f"the command did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _snapshot(root: Path) -> dict[str, str]:
    """sha256 of every regular file below ``root`` (FIFOs and folders by name only)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_fifo() or path.is_dir():
            found[str(path)] = "special"
        elif path.is_file():
            found[str(path)] = _sha(path)
    return found


def _check(data: Data, case: Bad, out: Path, capsys) -> None:
    before = _snapshot(data.root)
    with _deadline(60):
        code = main(case.command_line(data, out))
    captured = capsys.readouterr()
    err = captured.err.strip()
    first = err.splitlines()[0] if err else ""
    assert code == case.code, f"exit {code}, stderr: {err!r}, stdout: {captured.out[-500:]!r}"
    assert "Traceback" not in err + captured.out
    named = str(out) if case.names == "out" else data[case.names]
    assert named in first or Path(named).name in first, f"first line does not name {named}: {first!r}"
    assert any(word in first.lower() for word in PROBLEM[case.problem]), f"{case.problem}? {first!r}"
    assert _snapshot(data.root) == before, "an input changed, or a file appeared beside the inputs"
    escaped = list(data.root.parent.rglob("*escaped*")) + list(data.root.parent.glob("absolute_case"))
    assert escaped == []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_with_one_clear_line(data, case, tmp_path, capsys):
    _check(data, case, tmp_path / "out", capsys)


READ_ONLY = {
    "segment": fill(SEGMENT, "t1"),
    "stats": fill(STATS, "labels"),
    "export": fill(EXPORT, "series-labels"),
    "convert": "convert <series> --out <out>/c.nii.gz",
    "swap": "swap <anatomy> <style> --out <out>/s.png",
    "features": fill(FEATURES, "t1"),
    "compare": fill(COMPARE, "flair"),
    "batch": fill(BATCH, "cohort"),
    "demo": "demo --out <out>",
}


@pytest.mark.parametrize("command", list(READ_ONLY))
def test_read_only_out_is_said_naming_the_output(data, command, tmp_path, capsys):
    """The first line names the output (or its folder), never a hidden temporary file."""
    folder = _read_only_folder(tmp_path / "ro")
    if folder is None:
        pytest.skip("no read-only folder can be made here")
    try:
        _check(data, Bad(f"{command}-read-only", READ_ONLY[command], "out", "read-only"), folder, capsys)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(folder)], capture_output=True)
        else:
            folder.chmod(0o755)


def test_ctrl_c_in_a_batch_says_one_line_and_exits_130(data, tmp_path):
    """A real SIGINT to a running `domaingen batch`: one line, status 130, finished cases kept in results.csv."""
    cohort = tmp_path / "cohort"
    for number in range(6):
        (cohort / f"case{number}").mkdir(parents=True)
        os.symlink(data.files["t1"], cohort / f"case{number}" / "t1.nii.gz")
    out = tmp_path / "out"
    argv = [
        sys.executable,
        "-m",
        "napari_domaingen",
        "batch",
        "features",
        str(cohort),
        "--out",
        str(out),
        "--contrast",
        "T1",
        "--weights",
        data["weights"],
        "--workers",
        "1",
        "--threads",
        "1",
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in process.stdout:  # wait for the first finished case
            seen.append(line)
            if "case0: ok" in line:
                break
        assert process.poll() is None, f"the batch ended before it was interrupted: {seen}"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 130, f"status {process.returncode}; stderr {err!r}; stdout {seen}"
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted:" in lines[0] and "of 6 cases done" in lines[0], err
    assert "Traceback" not in err
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) >= 2 and rows[1].startswith("case0,ok")
    assert not [p for p in out.rglob(".*") if p.name.startswith(".") and p.is_file()], "a temporary file was left"


@pytest.mark.parametrize("command", ["segment", "features", "swap", "compare", "stats"])
def test_ctrl_c_in_a_single_case_command_is_one_line_and_130(data, command, tmp_path, capsys, monkeypatch):
    """Ctrl-C while a command works (raised where it drives its job or writes): one line, 130, no output."""
    import napari_domaingen.io.atomic as atomic
    import napari_domaingen.progress as progress

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(progress, "run", interrupt)
    monkeypatch.setattr(atomic.tempfile, "mkstemp", interrupt)
    out = tmp_path / "out"
    argv = {
        "segment": ["segment", data["t1"], "--model", data["model"], "--out", str(out / "l.nii.gz"), "--quiet"],
        "features": ["features", data["t1"], "--out", str(out / "f.nii.gz"), "--weights", data["weights"]],
        "swap": ["swap", data["anatomy"], data["style"], "--out", str(out / "s.png")],
        "compare": ["compare", data["t1"], data["flair"], "--out", str(out), "--weights", data["weights"]],
        "stats": ["stats", data["labels"], "--out", str(out / "s.csv")],
    }[command]
    assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"domaingen {command}: interrupted"), err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]
