"""`python -m inspector bench`: speed and memory of a side-by-side inspection on this machine.

The real weights cannot be downloaded here, so the model is random-initialised with the
exact Qwen2-VL-2B shape (`--shape 2b`; same layers and sizes, hence the same speed and
memory) and every generate is forced to a fixed number of new tokens. The tokenizer and
processor are the tiny stand-in's (same classes; the vocabulary is smaller, so prompts
are a few dozen tokens shorter than with Qwen's tokenizer: the table shows the counts).

In the same run it measures our settings, the seed-style baseline (fp32, the processor's
default pixel budget, base and adapter as two generate calls, a 150-token prose answer)
and each lever on its own, and prints the ratios. `--settings` runs a subset by key (`ours` is
always run: the ratios are against it); a precision this CPU computes at under a tenth of
fp32's rate (bf16 without AVX512-BF16 or AMX) is skipped, and the table says so.

    python -m inspector bench --shape 2b --json --out bench.json
    python -m inspector bench --shape 2b --settings ours,seed-style    # minutes, not an hour
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setting:
    """One way of producing a side-by-side report; the levers are its fields."""

    name: str  # as the table shows it
    precision: str  # int8 / bf16 / fp32 on CPU, nf4 on CUDA
    views: str  # "native": our global view + native crops; "processor": whole image, processor's default budget
    answer_tokens: int  # forced generation length per report
    batched: bool  # base and adapter in one generate (mixed adapters), or two calls
    cache: str = "dynamic"  # "static", or "compiled": static cache and torch.compile of the decode step
    attention: str = "sdpa"  # or "eager"
    threads: int | None = None  # torch's intra-op threads for this row; None: the default (one per core)
    share_vision: bool = True  # one vision-tower pass for the base and adapter rows
    visual_token_budget: int = 256
    int8_vision: str | None = None  # in int8, the vision tower: "bf16", or int8 with "per-token"/"per-tensor" scales
    key: str = "ours"  # what `--settings` calls it
    # "fields": the answer's fixed layout fed, one pass per value (inspector.fields; answer_tokens
    # does not apply); "free": answer_tokens forced new tokens, one pass each
    decoding: str = "fields"

    @property
    def answer(self) -> str:
        """The answer column: how the answer is decoded."""
        return "4 fields" if self.decoding == "fields" else f"{self.answer_tokens} tokens"

    @property
    def model_key(self) -> tuple[str, str | None]:
        """Settings with the same key share one built model."""
        return self.precision, self.int8_vision if self.precision == "int8" else None


def settings(fast_precision: str, gpu_compute: str = "bf16", fast_vision: str | None = None) -> list[Setting]:
    """Every setting the bench knows for this fast precision: ours, the seed-style baseline, each lever.
    On a GPU the baseline runs unquantized in `gpu_compute` (`inspector.device.compute_dtype`: fp16
    where the GPU has no bf16). `fast_vision`: int8's vision tower in ours (the runtime's: "bf16" on
    CPUs with native bf16, None for fp32)."""
    ours = Setting("ours", fast_precision, "native", 32, True,
                   int8_vision=fast_vision if fast_precision == "int8" else None)
    seed = Setting("seed-style baseline", "fp32" if fast_precision != "nf4" else gpu_compute, "processor", 150, False,
                   share_vision=False, key="seed-style", decoding="free")
    levers = [
        replace(ours, name="lever: free decoding, 32 tokens", decoding="free", key="free-decoding"),
        replace(ours, name="lever: processor's default view", views="processor", key="processor-view"),
        replace(ours, name="lever: 150-token prose answer", answer_tokens=150, decoding="free", key="prose-answer"),
        replace(ours, name="lever: two generate calls", batched=False, key="two-calls"),
        replace(ours, name="lever: vision tower run per row", share_vision=False, key="vision-per-row"),
        replace(ours, name="lever: twice the visual tokens", visual_token_budget=2 * ours.visual_token_budget,
                key="double-tokens"),
        replace(ours, name="lever: half the visual tokens", visual_token_budget=ours.visual_token_budget // 2,
                key="half-tokens"),
        replace(ours, name="lever: static cache", cache="static", key="static-cache"),
        replace(ours, name="lever: static cache and torch.compile", cache="compiled", key="compiled"),
        replace(ours, name="lever: eager attention instead of SDPA", attention="eager", key="eager"),
        replace(ours, name="lever: one thread", threads=1, key="one-thread"),
    ]
    if fast_precision in ("int8", "bf16", "fp32"):
        others = [other for other in ("int8", "bf16", "fp32") if other != fast_precision]
        precisions = [replace(ours, name=f"lever: {other} instead of {fast_precision}", precision=other, key=other,
                              int8_vision=None) for other in others]
        if ours.int8_vision == "bf16":  # the default on CPUs with native bf16: the tower as elsewhere too
            precisions.append(replace(ours, name="lever: int8 language model, fp32 vision tower", int8_vision=None,
                                      key="int8-fp32-vision"))
        if fast_precision == "int8":
            precisions += [
                replace(ours, name="lever: int8 vision tower too, a scale per token", int8_vision="per-token",
                        key="int8-vision"),
                replace(ours, name="lever: int8 vision tower too, a scale per tensor", int8_vision="per-tensor",
                        key="int8-vision-per-tensor"),
            ]
        if fast_precision == "bf16":  # a CPU with native bf16: int8 decodes faster, bf16 encodes faster
            precisions.append(replace(ours, name="lever: int8 language model, bf16 vision tower", precision="int8",
                                      int8_vision="bf16", key="int8-bf16-vision"))
        levers[:0] = precisions
    return [ours, seed, *levers]


def select_settings(fast_precision: str, keys: str | None, gpu_compute: str = "bf16",
                    fast_vision: str | None = None) -> list[Setting]:
    """The settings named in `keys` (comma-separated), `ours` first whether named or not; all by default."""
    known = settings(fast_precision, gpu_compute, fast_vision)
    if not keys:
        return known
    asked = [key.strip() for key in keys.split(",") if key.strip()]
    unknown = sorted(set(asked) - {setting.key for setting in known})
    if unknown:
        raise ValueError(f"unknown bench setting(s) {', '.join(unknown)}; with {fast_precision} as the fast "
                         f"precision the bench knows: {', '.join(setting.key for setting in known)}")
    return [setting for setting in known if setting.key == "ours" or setting.key in asked]


def slow_precisions(rates: dict[str, float]) -> dict[str, str]:
    """Precisions this CPU computes at under a tenth of fp32's matmul rate, each with the reason.

    On an AVX2-only CPU bf16 is emulated at about 0.5 GFLOPS against 95 for fp32: one bf16 row of
    the 2B shape would take longer than the rest of the bench together, and tell nothing new."""
    fp32 = rates.get("matmul_gflops_fp32")
    slow = {}
    for precision in ("bf16",):
        rate = rates.get(f"matmul_gflops_{precision}")
        if fp32 and rate is not None and rate < fp32 / 10:
            slow[precision] = f"skipped: {precision} matmuls at {rate} GFLOPS, under a tenth of fp32's {fp32}"
    return slow


def build_model(shape: str, precision: str, processor, seed: int = 0, int8_vision: str | None = None):
    """A random-initialised Qwen2-VL with a LoRA adapter, in the asked precision."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2VLForConditionalGeneration

    from inspector.device import Runtime, compute_dtype
    from inspector.model import ADAPTER_NAME, LANGUAGE_LORA_TARGETS, load_base
    from inspector.quantize import quantize_int8, vision_scheme
    from inspector.tiny import build_2b_shaped, qwen2_vl_2b_config

    if shape != "2b":
        raise ValueError("build_model builds the 2b shape; the tiny shape is loaded from its folder")
    # Every precision but int8 runs on the GPU where there is one: the unquantized baseline too.
    device = "cuda" if precision == "nf4" or (torch.cuda.is_available() and precision != "int8") else "cpu"
    compute, why = compute_dtype(device)
    tower = vision_scheme(int8_vision) if precision == "int8" else None
    runtime = Runtime(device, precision, f"benchmark; {why}" if precision == "nf4" else "benchmark", compute,
                      int8_vision=tower)
    log.info("benchmark runtime: %s", runtime.describe())
    if runtime.quantized:  # nf4 weights are made by loading: write the random model, load it as the app does
        with tempfile.TemporaryDirectory() as folder:
            model, _ = load_base(str(build_2b_shaped(Path(folder) / "2b", seed)), runtime=runtime)
    else:
        torch.manual_seed(seed)
        # int8 starts from the 2B checkpoint's own bf16 (Runtime.load_dtype; a random model has no checkpoint)
        dtype = torch.bfloat16 if runtime.int8 else runtime.torch_dtype
        model = Qwen2VLForConditionalGeneration._from_config(qwen2_vl_2b_config(processor.tokenizer),
                                                              dtype=dtype, attn_implementation="sdpa").to(device)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=LANGUAGE_LORA_TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(model, lora, adapter_name=ADAPTER_NAME).eval()
    if runtime.int8:
        quantize_int8(model, vision=tower)
    return model, runtime


def bench_photo(size: tuple[int, int], folder: Path) -> Path:
    """A real photo (scikit-learn's sample) resized to `size`, saved as JPEG."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    path = folder / f"photo-{size[0]}x{size[1]}.jpg"
    Image.fromarray(load_sample_image("china.jpg")).resize(size, Image.Resampling.BICUBIC).save(path, quality=92)
    return path


def time_setting(inspector, setting: Setting, photo: Path) -> dict:
    """End-to-end seconds of one side-by-side report (load, views, generate, parse)."""
    inspector.config.max_new_tokens = inspector.config.min_new_tokens = setting.answer_tokens
    inspector.config.decoding = setting.decoding
    with lever_applied(inspector, setting):
        return _time_report(inspector, setting, photo)


@contextmanager
def lever_applied(inspector, setting: Setting):
    """The row's cache, attention and threads on the loaded model, put back afterwards."""
    from transformers import CompileConfig

    generation = inspector.model.generation_config
    model = inspector.model.get_base_model() if hasattr(inspector.model, "get_base_model") else inspector.model
    threads, cache, attention = torch.get_num_threads(), inspector.config.kv_cache, model.config._attn_implementation
    inspector.config.kv_cache = "static" if setting.cache in ("static", "compiled") else "dynamic"
    if setting.cache == "compiled":
        # generate compiles the decode step itself when the cache is static (so on CUDA the
        # static lever compiles too), on CUDA only unless told otherwise; "reduce-overhead"
        # means CUDA graphs, so plain inductor on a CPU.
        generation.compile_config = CompileConfig(mode="reduce-overhead" if torch.cuda.is_available() else "default")
        generation.compile_config._compile_all_devices = True
    model.set_attn_implementation(setting.attention)
    if setting.threads:
        torch.set_num_threads(setting.threads)
    try:
        yield
    finally:
        inspector.config.kv_cache, generation.compile_config = cache, None
        model.set_attn_implementation(attention)
        torch.set_num_threads(threads)


def _time_report(inspector, setting: Setting, photo: Path) -> dict:
    from inspector.images import load_image, make_views
    from inspector.model import ADAPTER_NAME, BASE_NAME
    from inspector.report import parse_report

    started = time.perf_counter()
    picture = load_image(photo)
    viewing = time.perf_counter()
    views = make_views(picture, setting.visual_token_budget) if setting.views == "native" else [picture]
    views_ms = (time.perf_counter() - viewing) * 1000
    if setting.batched:
        rows = [views, views] if setting.share_vision else [views, list(views)]  # distinct lists: two passes
        texts = inspector.generate(rows, [BASE_NAME, ADAPTER_NAME])
    else:
        texts = inspector.generate([views], [BASE_NAME]) + inspector.generate([views], [ADAPTER_NAME])
    reports = [parse_report(text) for text in texts]
    elapsed = time.perf_counter() - started
    inputs_1 = _prompt_tokens(inspector, views)
    return {"seconds": round(elapsed, 2), "views_ms": round(views_ms, 1), "prompt_tokens": inputs_1["prompt"],
            "visual_tokens": inputs_1["visual"], "reports": len(reports)}


def _prompt_tokens(inspector, views) -> dict:
    from inspector.prompts import build_inputs

    inputs = build_inputs(inspector.processor, [views], inspector.instruction)
    visual = int((inputs["input_ids"] == inspector.model.config.image_token_id).sum())
    return {"prompt": int(inputs["input_ids"].shape[1]), "visual": visual}


class _TokenClock:
    """A transformers streamer that notes when each step's tokens arrive (the first `put` is the prompt)."""

    def __init__(self):
        self.arrivals: list[float] = []

    def put(self, tokens) -> None:
        self.arrivals.append(time.perf_counter())

    def end(self) -> None:
        pass


def time_prefill_decode(inspector, photo: Path, new_tokens: int = 32) -> dict:
    """Prefill seconds and free decode tokens/s of the fast path (batch of 2: base + adapter).

    One warm-up generate, then one timed generate of `new_tokens` whose steps a streamer
    clocks: prefill is the call's start (vision pass included) to the first new token, decode
    the rate of the steps after it. (Subtracting a 1-token run from a 32-token run, as this
    did before, went negative on the tiny shape when the first run paid a warm-up.)
    """
    from inspector.images import load_image, make_views
    from inspector.model import ADAPTER_NAME, BASE_NAME

    views = make_views(load_image(photo), inspector.config.visual_token_budget)
    inspector.config.max_new_tokens = inspector.config.min_new_tokens = 2
    inspector.generate([views, views], [BASE_NAME, ADAPTER_NAME], decoding="free")
    inspector.config.max_new_tokens = inspector.config.min_new_tokens = new_tokens
    clock = _TokenClock()
    started = time.perf_counter()
    inspector.generate([views, views], [BASE_NAME, ADAPTER_NAME], streamer=clock, decoding="free")
    steps = clock.arrivals[1:]  # after the prompt's own put
    decode_s = (steps[-1] - steps[0]) / (len(steps) - 1)
    return {"prefill_s": round(steps[0] - started, 2), "decode_tokens_per_s": round(1 / decode_s, 2)}


def peak_memory_gb() -> dict:
    if torch.cuda.is_available():
        return {"peak_vram_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    return {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def run_bench(shape: str = "2b", image: str | None = None, keys: str | None = None) -> dict:
    """The benchmark (every setting, or those in `keys`), its scratch files (models, photos) in a
    folder removed afterwards."""
    from inspector.device import choose_runtime

    runtime = choose_runtime()
    # a bad key fails before any model is built
    planned = select_settings(runtime.precision, keys, runtime.compute, runtime.int8_vision)
    with tempfile.TemporaryDirectory(prefix="inspector-bench-") as scratch:
        return _run_bench(shape, image, planned, Path(scratch))


def _run_bench(shape: str, image: str | None, planned: list[Setting], work: Path) -> dict:
    from inspector.device import cpu_kind, machine, matmul_gflops
    from inspector.tiny import build_tiny

    tiny = build_tiny(work / "tiny")
    photos = {"1024x768": Path(image) if image else bench_photo((1024, 768), work),
              "12MP": bench_photo((4000, 3000), work)}
    ours = planned[0]
    results = {"machine": machine(), "cpu_kind": cpu_kind(), "shape": shape, "fast_precision": ours.precision,
               "fast_int8_vision": ours.int8_vision, "settings": [], "load_average": os.getloadavg()[0]}
    skipped = {}
    if not torch.cuda.is_available():
        results.update(matmul_gflops())
        skipped = slow_precisions(results)
    rows = {setting.name: {**asdict(setting), "skipped": skipped[setting.precision]}
            for setting in planned[1:] if setting.precision in skipped}
    # One precision's model at a time (the fp32 2B alone is 9 GB), the fast one first, so its
    # memory figures are taken before any other model was built.
    for key in dict.fromkeys(setting.model_key for setting in planned if setting.name not in rows):
        precision, int8_vision = key
        started = time.perf_counter()
        inspector = _load(shape, precision, tiny, work, int8_vision)
        results[f"load_s_{precision}{f'_vision_{int8_vision}' if int8_vision else ''}"] = round(
            time.perf_counter() - started, 1)
        for decoding in ("fields", "free"):  # warm-up: the first call of each path pays its set-up
            time_setting(inspector, replace(ours, precision=precision, answer_tokens=2, decoding=decoding),
                         photos["1024x768"])
        for setting in (setting for setting in planned if setting.model_key == key and setting.name not in rows):
            rows[setting.name] = _timed_row(inspector, setting, photos)
        if key == ours.model_key:
            results.update(time_prefill_decode(inspector, photos["1024x768"]))
            results.update(peak_memory_gb())
            results["resident_gb"] = resident_gb()
        del inspector
    results["settings"] = [rows[setting.name] for setting in planned]
    results["load_average_end"] = os.getloadavg()[0]
    timed = {row["key"]: row["1024x768"]["seconds"] for row in results["settings"] if "1024x768" in row}
    if "ours" in timed and "seed-style" in timed:
        results["speedup_vs_seed"] = round(timed["seed-style"] / timed["ours"], 1)
    return results


def _load(shape: str, precision: str, tiny: Path, work: Path, int8_vision: str | None = None):
    """An Inspector with a LoRA adapter in `precision`: the 2B shape random-initialised, or the tiny."""
    from inspector.model import Inspector, InspectorConfig

    if shape == "2b":
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(tiny)
        model, runtime = build_model(shape, precision, processor, int8_vision=int8_vision)
        return Inspector(model, processor, runtime, InspectorConfig(), True)
    from inspector.tiny import build_tiny_adapter

    adapter = work / "adapter"
    if not adapter.exists():
        build_tiny_adapter(tiny, adapter)
    return Inspector.load(InspectorConfig(base=str(tiny), adapter=str(adapter), adapter_revision=None,
                                          precision=precision, int8_vision=int8_vision))


def _timed_row(inspector, setting: Setting, photos: dict[str, Path]) -> dict:
    row = asdict(setting)
    try:
        if setting.cache != "dynamic":  # its first call sets up the cache, and compiles: timed on its own
            row["first_call_s"] = time_setting(inspector, setting, photos["1024x768"])["seconds"]
        row["1024x768"] = time_setting(inspector, setting, photos["1024x768"])
        if setting.name == "ours":  # the seed's default pixel budget makes a 12 MP photo ~15k visual tokens
            row["12MP"] = time_setting(inspector, setting, photos["12MP"])
    except Exception as error:  # noqa: BLE001 - a lever that does not run on this version is a finding
        row["error"] = f"{type(error).__name__}: {str(error)[:200]}"
    log.info("%s", row)
    print(f"  {setting.name}: {row.get('1024x768', row.get('error'))}", file=sys.stderr, flush=True)
    return row


def resident_gb() -> float:
    """Resident memory now (Linux), after the load-time peak has passed."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**30, 2)


def render_table(results: dict) -> str:
    ours = results["settings"][0]["1024x768"]["seconds"] if "1024x768" in results["settings"][0] else None
    rates = ", ".join(f"{key[-4:]} {value}" for key, value in results.items() if key.startswith("matmul"))
    lines = [f"machine: {results['machine']}; CPU kind: {results['cpu_kind']}; shape: {results['shape']}; "
             f"load average at start {results['load_average']:.1f}, at end "
             f"{results.get('load_average_end', float('nan')):.1f}; matmul GFLOPS: {rates}",
             "| setting | precision | view | visual tokens | prompt tokens | answer | calls | "
             "1024x768 s | vs ours | 12 MP s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in results["settings"]:
        small, large = row.get("1024x768"), row.get("12MP")
        if small is None:
            lines.append(f"| {row['name']} | {row['precision']} | {row['views']} | | | {_answer(row)} | "
                         f"| {row.get('skipped') or row['error']} | | |")
            continue
        ratio = f"{small['seconds'] / ours:.1f}x" if ours else ""
        name = row["name"] + (f" (first call {row['first_call_s']} s)" if "first_call_s" in row else "")
        lines.append(f"| {name} | {row['precision']} | {row['views']} | {small['visual_tokens']} | "
                     f"{small['prompt_tokens']} | {_answer(row)} | {1 if row['batched'] else 2} | "
                     f"{small['seconds']} | {ratio} | {large['seconds'] if large else ''} |")
    memory = ", ".join(f"{key} {value}" for key, value in results.items()
                       if key.startswith("peak") or key == "resident_gb")
    speedup = f"{results['speedup_vs_seed']}x" if "speedup_vs_seed" in results else "not run (seed-style not asked)"
    lines.append(f"\nprefill (batch 2) {results['prefill_s']} s, decode {results['decode_tokens_per_s']} "
                 f"tokens/s; {memory}; speed-up vs seed-style: {speedup}")
    return "\n".join(lines)


def _answer(row: dict) -> str:
    return Setting(**{key: row[key] for key in Setting.__dataclass_fields__}).answer


def bench_main(args) -> int:
    try:
        results = run_bench(args.shape, args.image, args.settings)
    except ValueError as error:  # an unknown setting: say which exist, build nothing
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(results, indent=2) if args.json else render_table(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0
