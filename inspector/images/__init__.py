"""Images in: reading and validating user files (`load_image`), and what the model sees (`make_views`).

- `load`, `formats`, `pixels`: the edge where untrusted files enter, as upright 8-bit RGB
  or an `ImageError` that says what to do;
- `folders`: command-line paths to image files;
- `views`: native-resolution crops plus a small global view, sized in Qwen2-VL tokens.
"""

from .folders import iter_image_paths
from .formats import IMAGE_EXTENSIONS, READ_FORMATS, SUPPORTED_FORMATS_TEXT, ImageError, describe_unreadable, sniff_content
from .load import ImageLimits, load_image
from .views import MAX_ASPECT_RATIO, MIN_VIEW_PATCHES, PREVIEW_SIDE, QWEN_PATCH, make_views, view_tokens

__all__ = ["IMAGE_EXTENSIONS", "MAX_ASPECT_RATIO", "MIN_VIEW_PATCHES", "PREVIEW_SIDE", "QWEN_PATCH", "READ_FORMATS",
           "SUPPORTED_FORMATS_TEXT", "ImageError", "ImageLimits", "describe_unreadable", "iter_image_paths",
           "load_image", "make_views", "sniff_content", "view_tokens"]
