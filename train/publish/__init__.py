"""Publishing (train/push.py): the cards and the checks of an upload; not part of the run-time library."""
