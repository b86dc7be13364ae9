"""Degradation Inspector: a vision-language model that reports what is wrong with a photo.

    from inspector import Inspector
    inspector = Inspector.load(base="Qwen/Qwen2-VL-2B-Instruct", adapter="ORG/ADAPTER")
    result = inspector.inspect(["photo.jpg"])[0]
    print(result.base.to_json(), result.adapter.to_json())

Heavy imports (torch, transformers) happen on first use, so `import inspector` is cheap.
"""

from inspector.report import Degradation, Report, parse_report
from inspector.taxonomy import DEGRADATION_TYPES, SEVERITIES

__all__ = ["DEGRADATION_TYPES", "SEVERITIES", "Degradation", "Inspection", "Inspector",
           "InspectorConfig", "Report", "parse_report"]
__version__ = "0.1.0"


def __getattr__(name):
    if name in ("Inspector", "InspectorConfig", "Inspection"):
        from inspector import model

        return getattr(model, name)
    raise AttributeError(f"module 'inspector' has no attribute {name!r}")
