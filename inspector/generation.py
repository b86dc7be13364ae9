"""The decoding every answer of the project is generated with: greedy, nothing else.

`generate` takes what it is not told from the checkpoint's `generation_config.json`, and
Qwen2-VL-2B-Instruct's asks for sampling and a repetition penalty of 1.05. A penalty
alone changes greedy answers (on the tiny stand-in, that one value changed its output),
above all ours, which repeat "none" for every absent type, and training never sees it.
So every call passes each knob that shapes a greedy answer, and puts the sampling-only
ones at transformers' own neutral values, which also keeps `generate` from warning that
they are set but unused. Only knobs that exist across the supported transformers range
are named: `generate` refuses an unknown one.
"""

from __future__ import annotations

GREEDY_DECODING = {
    "do_sample": False,
    "num_beams": 1,
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    # sampling-only: neutral, so a checkpoint's values neither act nor warn
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "min_p": None,
}
