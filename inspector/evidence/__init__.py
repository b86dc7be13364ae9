"""Measured evidence: synthesis and measurement of blur, noise, low resolution and JPEG.

No model is involved; everything runs in milliseconds on a CPU. The same functions
degrade the training data (`degrade`, `sample_spec`), measure images for the app and
the CLI (`measure`, `analyze_path`, `maps`, `render_overlay`) and score the benchmark.
"""

from inspector.evidence.analyze import analyze_main, analyze_path
from inspector.evidence.tile_maps import MAP_TYPES, maps
from inspector.evidence.measure import Evidence, MeasuredDegradation, measure
from inspector.evidence.overlay import render_overlay
from inspector.evidence.synthesis import degrade, sample_spec

__all__ = [
    "Evidence",
    "MAP_TYPES",
    "MeasuredDegradation",
    "analyze_main",
    "analyze_path",
    "degrade",
    "maps",
    "measure",
    "render_overlay",
    "sample_spec",
]
