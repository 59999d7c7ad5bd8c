"""The baseline a user would pick instead: elastix (itk-elastix) with its standard multi-modal recipe, affine then
B-spline on the intensities' Mattes mutual information, elastix's default parameter maps (4 and 3 resolutions, 256
iterations each) with a 10 mm B-spline grid and a centre-of-gravity start. Run in its own process (``python
_elastix_baseline.py FIXED MOVING FIELD_OUT``), on elastix's default threads (all cores): itk-elastix 0.25.4
crashed (segmentation fault) here whenever ``SetNumberOfThreads`` was called on a whole brain. Writes the full
fixed → moving displacement field (LPS mm, NIfTI) and prints the seconds the registration took."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main(fixed_path: str, moving_path: str, field_path: str, threads: int = 0) -> None:
    import itk

    fixed = itk.imread(fixed_path, itk.F)
    moving = itk.imread(moving_path, itk.F)
    start = time.perf_counter()
    parameters = itk.ParameterObject.New()
    affine = parameters.GetDefaultParameterMap("affine", 4)
    affine["AutomaticTransformInitialization"] = ["true"]
    affine["AutomaticTransformInitializationMethod"] = ["CenterOfGravity"]
    bspline = parameters.GetDefaultParameterMap("bspline", 3)
    bspline["FinalGridSpacingInPhysicalUnits"] = ["10"]
    parameters.AddParameterMap(affine)
    parameters.AddParameterMap(bspline)
    method = itk.ElastixRegistrationMethod[type(fixed), type(moving)].New()
    method.SetFixedImage(fixed)
    method.SetMovingImage(moving)
    method.SetParameterObject(parameters)
    if threads:
        method.SetNumberOfThreads(threads)
    method.SetLogToConsole(False)
    method.Update()
    seconds = time.perf_counter() - start
    # on the fixed grid, which the transform parameters record; transformix also leaves a deformationField.nii in
    # the working folder: make that the output's folder
    os.chdir(Path(field_path).resolve().parent)
    field = itk.transformix_deformation_field(moving, method.GetTransformParameterObject())
    itk.imwrite(field, field_path)
    print(f"{seconds:.2f}")


if __name__ == "__main__":
    main(*(str(Path(p).resolve()) for p in sys.argv[1:4]))
