"""Named types used across the package (one definition each; TorchIO's ``typing.py`` is the model).

>>> from napari_domaingen.typing import Precision
>>> Precision.__args__
('auto', 'fp32', 'bf16')
"""

from __future__ import annotations

import os
from typing import Literal

__all__ = ["FeatureLayer", "PathLike", "Precision"]

#: arithmetic of a network's forward pass: ``auto`` picks bf16 where the hardware has it (core.device)
Precision = Literal["auto", "fp32", "bf16"]
#: which anatomix output is the feature map: the final convolution, or the penultimate block (post-ReLU)
FeatureLayer = Literal["final", "penultimate"]
#: a file or folder path as every public function accepts it
PathLike = str | os.PathLike[str]
