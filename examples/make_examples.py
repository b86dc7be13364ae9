"""Write the app's example photos: real photos (scikit-image) with known degradations.

    python examples/make_examples.py

Each file name says what was applied, so a visitor can check the reports against it.
"""

from pathlib import Path

from PIL import Image
from skimage import data

from inspector.evidence import degrade

HERE = Path(__file__).parent
EXAMPLES = [
    ("clean-coffee.png", data.coffee, {}),
    ("blur-moderate-astronaut.png", data.astronaut, {"blur": {"kind": "gaussian", "sigma": 3.0}}),
    ("noise-severe-chelsea.png", data.chelsea, {"noise": {"kind": "gaussian", "sigma": 30.0}}),
    ("lowres-moderate-rocket.png", data.rocket, {"low_resolution": {"factor": 3.0, "interpolation": "bicubic"}}),
    ("jpeg-severe-coffee.jpg", data.coffee, {"jpeg_artifacts": {"quality": 10}}),
]


def main() -> None:
    for name, load, spec in EXAMPLES:
        photo = degrade(Image.fromarray(load()), spec, seed=0) if spec else Image.fromarray(load())
        if name.endswith(".jpg"):
            # Saved at the quality the spec names, so the file's own tables carry the evidence.
            photo.save(HERE / name, quality=spec["jpeg_artifacts"]["quality"])
        else:
            photo.save(HERE / name, optimize=True)
        print(HERE / name)


if __name__ == "__main__":
    main()
