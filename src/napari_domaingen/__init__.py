"""napari-domaingen: domain-generalisation tools (anatomix features, MaskGen, DGM-DR) for napari.

The package root imports nothing heavy: napari, Qt and torch load only when a reader, widget or command needs them.
"""

__version__ = "0.1.0"
