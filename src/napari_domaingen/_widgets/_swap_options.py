"""The swap widget's rendering options (docs/swap.md#rendering-options): a thin set of magicgui controls.

*seamless* (two shifted tilings blended so no patch grid shows; off: the paper's single tiling, whose *tile
overlap* then applies), *keep detail* (carry the anatomy image's fine detail over) and *tissue style* (mean styles
over the style image's tissue, not its glass). All three are on by default.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox, Container, FloatSpinBox

from ..core.swap import DEFAULT_OVERLAP
from .swap_jobs import TilingKey, tiling_key

__all__ = ["RenderOptions"]


class RenderOptions:
    """``row``: the three check boxes side by side; ``overlap``: the plain tiling's overlap (enabled without
    *seamless*)."""

    def __init__(self) -> None:
        self.overlap = FloatSpinBox(
            label="tile overlap",
            value=DEFAULT_OVERLAP,
            min=0.0,
            max=0.75,
            step=0.05,
            enabled=False,
            tooltip="without 'seamless': fraction by which the model's tiles overlap (blended with a Gaussian "
            "window, no tile seams; the 8 px patch grid stays); more overlap: slower encoding",
        )
        self.seamless = CheckBox(
            text="seamless",
            value=True,
            tooltip="blend two tilings whose patch grids are shifted by half a patch, so no patch grid or tile "
            "border shows (about 2 encodings per pixel); off: the DGM-DR paper's single tiling",
        )
        self.detail = CheckBox(
            text="keep detail",
            value=True,
            tooltip="carry over the fine detail of the anatomy image that the model cannot represent (the "
            "difference between the image and its own reconstruction, in grey optical density, so the old "
            "stain's colour does not come back); off: the model's own render",
        )
        self.tissue = CheckBox(
            text="tissue style",
            value=True,
            tooltip="mean styles over the tissue patches of the image, not the glass around it (mean mode and "
            "the reverse swap); off: over every patch",
        )
        self.row = Container(widgets=[self.seamless, self.detail, self.tissue], layout="horizontal", labels=False)
        self.seamless.changed.connect(self._on_seamless)

    def _on_seamless(self, seamless: bool) -> None:
        self.overlap.enabled = not seamless

    def tiling(self) -> TilingKey:
        """What the encodings depend on (see :func:`~.swap_jobs.tiling_key`)."""
        return tiling_key(bool(self.seamless.value), float(self.overlap.value))

    def fill(self, request: Any) -> None:
        """Put the options into a :class:`~.swap_jobs.SwapRequest`."""
        request.overlap = round(float(self.overlap.value), 4)
        request.seamless = bool(self.seamless.value)
        request.detail = bool(self.detail.value)
        request.tissue_only = bool(self.tissue.value)
