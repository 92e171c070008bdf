"""napari plugin for lvpnet: open .lvp files lazily and load the sample scan.

All codec work happens in the core package ``lvpnet``; this package only turns
its results into napari layers.
"""

__all__: list[str] = []
