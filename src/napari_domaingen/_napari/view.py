"""Radiological (or neurological) 2D display of medical volumes, in every viewer they are opened in.

World coordinates stay scanner RAS millimetres listed (S, A, R) (docs/geometry.md); only the camera turns:
napari draws world axes increasing down and to the right, so an axial slice would show anterior at the bottom
and the patient's right on the screen's right. With the *radiological* convention (the default) the camera's
vertical axis points up and its horizontal axis left: axial anterior up and the patient's right on the screen's
left, coronal superior up with the patient's right on the left, sagittal superior up with anterior on the left.
*Neurological* keeps the vertical axis up and the horizontal axis right (the patient's right on the right).

A viewer is *followed* once (:func:`follow`): from then on, whenever its first medical volume arrives the camera
takes the chosen convention, and when its last one leaves napari's default returns (so a histology image opened
afterwards is not shown upside down). A medical volume that arrives apart from the other medical volumes (the
last one was closed while other layers stayed, or another patient opened beside one) is framed: camera and
sliders move to it, as napari does for a viewer's first layer. The readers, the sample data, *Load volumes* and
the demo follow the viewer they fill. The choice is kept in ``settings.json`` in the user's configuration folder
(``$DOMAINGEN_CONFIG_DIR``, else the platform's, e.g. ``~/.config/napari-domaingen``); ``$DOMAINGEN_VIEW`` overrides
it for one session.
"""

from __future__ import annotations

import json
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_text
from .layer_meta import read_meta

ENV_VIEW = "DOMAINGEN_VIEW"
ENV_CONFIG_DIR = "DOMAINGEN_CONFIG_DIR"
#: camera ``orientation2d`` (vertical, horizontal) of each convention
CONVENTIONS: dict[str, tuple[str, str]] = {"radiological": ("up", "left"), "neurological": ("up", "right")}
DEFAULT_CONVENTION = "radiological"
NAPARI_DEFAULT = ("down", "right")

_followed: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_session: dict[str, str] = {}  # the choice made in this process (the widget), ahead of the environment


# ------------------------------------------------------------------------------------------------ the setting


def config_dir() -> Path:
    """``$DOMAINGEN_CONFIG_DIR``, else the platform's user configuration folder for napari-domaingen."""
    folder = os.environ.get(ENV_CONFIG_DIR)
    if folder:
        return Path(folder).expanduser()
    try:
        from platformdirs import user_config_dir
    except ImportError:  # pragma: no cover - platformdirs comes with napari
        return Path.home() / ".config" / "napari-domaingen"
    return Path(user_config_dir("napari-domaingen", appauthor=False))


def _settings_path() -> Path:
    return config_dir() / "settings.json"


def _read_settings() -> dict[str, Any]:
    try:
        settings = json.loads(_settings_path().read_text())
    except (OSError, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}


def view_convention() -> str:
    """``"radiological"`` or ``"neurological"``: the choice made in this session, else ``$DOMAINGEN_VIEW``, else
    the saved choice, else radiological."""
    for value in (_session.get("view"), os.environ.get(ENV_VIEW), _read_settings().get("view")):
        if isinstance(value, str) and value.strip().lower() in CONVENTIONS:
            return value.strip().lower()
    return DEFAULT_CONVENTION


def set_view_convention(name: str, save: bool = True) -> None:
    """Choose the convention for every followed viewer (now and later); ``save`` keeps it for later sessions.

    ``ValueError`` for an unknown name; ``OSError`` naming the settings file when it cannot be written.
    """
    name = name.strip().lower()
    if name not in CONVENTIONS:
        raise ValueError(f"unknown view convention {name!r}; choose {' or '.join(CONVENTIONS)}")
    if save:
        path = _settings_path()
        settings = {**_read_settings(), "view": name}
        try:
            atomic_write_text(path, json.dumps(settings, indent=2))
        except OSError as err:
            raise OSError(f"{path}: cannot save the view setting ({err.strerror or err})") from None
    _session["view"] = name
    for viewer in list(_followed.values()):
        if _medical_layers(viewer):
            _set_orientation(viewer, CONVENTIONS[name])


# ------------------------------------------------------------------------------------------------ viewers


def is_medical_volume(layer: Any) -> bool:
    """A layer that shows a volume read by this plugin (NIfTI/DICOM) or derived from one: its metadata entry
    records the volume's display affine (histology images and plain arrays do not)."""
    meta = read_meta(layer)
    return "display_affine" in meta or "nifti_source" in meta


def _medical_layers(viewer: Any) -> list[Any]:
    return [layer for layer in viewer.layers if is_medical_volume(layer)]


def _camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def orientation(viewer: Any) -> tuple[str, str]:
    """The camera's 2D orientation as plain strings, e.g. ``("up", "left")``."""
    return tuple(str(getattr(axis, "value", axis)) for axis in _camera(viewer).orientation2d)  # type: ignore[return-value]


def _set_orientation(viewer: Any, value: tuple[str, str]) -> None:
    _camera(viewer).orientation2d = value


def _real(viewer: Any) -> Any:
    """The viewer behind napari's plugin proxy (which is a new object on every access)."""
    return getattr(viewer, "__wrapped__", viewer)


def follow(viewer: Any) -> None:
    """Show medical volumes in ``viewer`` with the chosen convention, from now on (idempotent)."""
    if viewer is None:
        return
    real = _real(viewer)
    if _followed.get(id(real)) is real:
        return
    _followed[id(real)] = real
    state = {"medical": bool(_medical_layers(real))}

    def on_change(event: Any = None) -> None:
        medical = bool(_medical_layers(real))
        if medical and not state["medical"]:
            _set_orientation(real, CONVENTIONS[view_convention()])
        elif not medical and state["medical"] and orientation(real) in CONVENTIONS.values():
            _set_orientation(real, NAPARI_DEFAULT)
        state["medical"] = medical
        inserted = getattr(event, "value", None) if getattr(event, "type", "") == "inserted" else None
        if inserted is not None and is_medical_volume(inserted):
            if _apart(real, inserted):
                frame(real, [inserted])
            say_if_oblique(inserted)

    real.layers.events.inserted.connect(on_change)
    real.layers.events.removed.connect(on_change)
    if state["medical"]:
        _set_orientation(real, CONVENTIONS[view_convention()])


def _world_box(layer: Any) -> np.ndarray:
    """``(2, 3)`` world extent (min, max) of a layer's last three axes, in mm."""
    return np.asarray(layer.extent.world, dtype=float)[:, -3:]


def _apart(viewer: Any, layer: Any) -> bool:
    """``layer`` is a medical volume that shares no space with the viewer's other medical volumes (none left, or
    all elsewhere: another patient, another scanner space), while other layers keep napari from framing it."""
    if len(viewer.layers) < 2:
        return False  # napari frames a viewer's first layer itself
    box = _world_box(layer)
    for other in _medical_layers(viewer):
        if other is layer:
            continue
        theirs = _world_box(other)
        if np.all(box[0] <= theirs[1]) and np.all(theirs[0] <= box[1]):
            return False
    return True


def frame(viewer: Any, layers: list[Any]) -> None:
    """Fit the camera to ``layers`` and move the sliders to their centre (napari's Home, for these layers only)."""
    if not layers:
        return
    viewer.reset_view(layers=layers)
    boxes = np.stack([_world_box(layer) for layer in layers])
    centre = (boxes[:, 0].min(axis=0) + boxes[:, 1].max(axis=0)) / 2
    axes = range(viewer.dims.ndim - 3, viewer.dims.ndim)
    for axis, value in zip(axes, centre):
        if axis >= 0 and axis not in viewer.dims.displayed:
            viewer.dims.set_point(axis, float(value))


#: napari's own warning for an oblique layer, repeated on every slice; :func:`say_if_oblique` says it once, plainly
NAPARI_OBLIQUE_WARNING = "Non-orthogonal slicing is being requested"


def oblique_note(layer: Any) -> str | None:
    """What the user sees for an oblique medical volume (``None`` for one along the scanner axes)."""
    from ..io.volume_resample import OBLIQUE_DEGREES, obliquity_degrees

    affine = read_meta(layer).get("display_affine")
    if affine is None or getattr(layer, "_type_string", "") not in ("image", "labels"):
        return None
    degrees = obliquity_degrees(np.asarray(affine))
    if degrees <= OBLIQUE_DEGREES:
        return None
    return (
        f"'{layer.name}' is oblique ({degrees:.0f}° from the scanner axes): napari draws each slice without that "
        "tilt, so planes across the slices look stepped. Positions, measurements and saved files stay exact; to see "
        "every plane straight, load it with Load volumes ▸ isotropic + scanner axes."
    )


def quiet_oblique_slicing() -> None:
    """Silence napari's per-slice warning for oblique layers (called when the plugin builds an oblique volume's
    layer, before napari slices it: :func:`say_if_oblique` tells the user instead)."""
    import warnings

    warnings.filterwarnings("ignore", message=NAPARI_OBLIQUE_WARNING)


def say_if_oblique(layer: Any) -> str | None:
    """Tell the user once (a napari notification) what an oblique volume looks like, instead of napari's warning on
    every slice; returns the note."""
    note = oblique_note(layer)
    if note is None:
        return None
    quiet_oblique_slicing()
    try:
        from napari.utils.notifications import show_info

        show_info(note)
    except Exception:  # no napari notification manager (a script): the note is still returned
        pass
    return note


def follow_current_viewer() -> None:
    """:func:`follow` the viewer napari is opening files into (the active window's), if there is one."""
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:
        return
    follow(viewer)
