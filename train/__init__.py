"""Training and publishing: one script per stage, `python train/SCRIPT.py --config train/recipes/NAME.yaml`."""
