"""File input/output without napari or Qt: NIfTI volumes, histology images, sample data."""

from .errors import DomaingenIOError, ImageReadError, VolumeReadError, VolumeWriteError
from .histology import HistologyImage, read_histology
from .nifti import NiftiSource, Volume, read_nifti, write_nifti

__all__ = [
    "DomaingenIOError",
    "HistologyImage",
    "ImageReadError",
    "NiftiSource",
    "Volume",
    "VolumeReadError",
    "VolumeWriteError",
    "read_histology",
    "read_nifti",
    "write_nifti",
]
