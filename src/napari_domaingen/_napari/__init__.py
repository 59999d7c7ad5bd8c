"""napari-facing glue: readers, writers, sample data and layer helpers (imports napari lazily where it can)."""
