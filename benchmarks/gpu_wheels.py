"""Build the wheels that travel with the working tree to a GPU machine without network.

    python benchmarks/gpu_wheels.py                  # -> gpu-wheels/ (git-ignored), ~18 MB
    python benchmarks/gpu_wheels.py --check          # only check an existing folder

The GPU machine has torch (CUDA 13.0 build), torchvision, accelerate, huggingface_hub and
tokenizers, but not bitsandbytes, datasets or trl, and an older transformers than the
pins allow; nothing can be downloaded there, and what travels is capped at 64 MiB with
the working tree. So this downloads `benchmarks/gpu-wheels.txt` for that machine's Python
and platform with pip (`--only-binary :all: --no-deps`: each dependency is named in the
file), and trims bitsandbytes, whose wheel carries a native library per CUDA and ROCm
release (43 MB), to the CUDA release of the machine's torch (2 MB). `gpu_check.py`
installs the folder with `pip install --no-index --find-links`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEEL_LIST = ROOT / "benchmarks" / "gpu-wheels.txt"
DEFAULT_FOLDER = ROOT / "gpu-wheels"
# The limit is the whole working tree's; the tree itself is ~2 MB, so 8 MiB are left for it.
SIZE_LIMIT_MIB = 56
# manylinux tags pip matches exactly: the GPU image is glibc 2.39 (Ubuntu 24.04), these cover the wheels we need
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
BNB_LIBRARY = re.compile(r"bitsandbytes/libbitsandbytes_(cuda\d+|rocm\d+|xpu\d+|cpu)\.(so|dll|dylib)$")


def read_pins(path: Path = WHEEL_LIST) -> list[str]:
    """The `name==version` lines of a requirements file, following `-r` includes."""
    pins = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            pins += read_pins(path.parent / line[3:].strip())
        elif "==" in line:
            pins.append(line)
        else:
            raise ValueError(f"{path}: {line!r} is not pinned (name==version): the wheels must be exact")
    return pins


def download(pins: list[str], folder: Path, python_version: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
               python_version, "--implementation", "cp", *[arg for tag in PLATFORMS for arg in ("--platform", tag)],
               "--platform", "any", "-d", str(folder), *pins]
    subprocess.run(command, check=True)


def trim_bitsandbytes(wheel: Path, cuda: list[str]) -> tuple[int, int]:
    """Keep only the CPU library and the CUDA releases in `cuda` (e.g. ["130"]) in the wheel,
    in place; RECORD loses the removed files' lines. Returns (bytes before, bytes after)."""
    before = wheel.stat().st_size
    keep = {"cpu", *(f"cuda{release}" for release in cuda)}
    with zipfile.ZipFile(wheel) as source:
        names = source.namelist()
        libraries = {name: match.group(1) for name in names if (match := BNB_LIBRARY.search(name))}
        missing = [release for release in cuda if f"cuda{release}" not in libraries.values()]
        if missing:
            raise ValueError(f"{wheel.name} has no library for CUDA {', '.join(missing)}; it has "
                             f"{sorted(set(libraries.values()))}")
        dropped = {name for name, kind in libraries.items() if kind not in keep}
        with tempfile.NamedTemporaryFile(dir=wheel.parent, suffix=".whl", delete=False) as handle:
            trimmed = Path(handle.name)
        with zipfile.ZipFile(trimmed, "w", zipfile.ZIP_DEFLATED) as target:
            for info in source.infolist():
                if info.filename in dropped:
                    continue
                data = source.read(info)
                if info.filename.endswith(".dist-info/RECORD"):
                    lines = [line for line in data.decode().splitlines() if line.split(",", 1)[0] not in dropped]
                    data = ("\n".join(lines) + "\n").encode()
                target.writestr(info, data)
    trimmed.chmod(0o644)  # a temporary file is private; the wheel it replaces was not
    trimmed.replace(wheel)
    return before, wheel.stat().st_size


def _wheel_name_version(path: Path) -> tuple[str, str, str]:
    """(normalised name, version, tags) from a wheel's file name."""
    parts = path.name[:-len(".whl")].split("-")
    if len(parts) < 5:
        raise ValueError(f"{path.name} is not a wheel file name (name-version-python-abi-platform.whl)")
    return re.sub(r"[-_.]+", "-", parts[0]).lower(), parts[1], "-".join(parts[-3:])


def _fits_the_gpu_machine(tags: str, python_version: str) -> bool:
    python, _, platform = tags.split("-")
    interpreters = set(python.split("."))
    cp = f"cp{python_version.replace('.', '')}"
    right_python = bool(interpreters & {"py3", cp, f"py{python_version.replace('.', '')}"})
    return right_python and all(tag == "any" or tag.endswith("x86_64") and "linux" in tag
                                for tag in platform.split("."))


def check_wheels(folder: Path, pins: list[str] | None = None, python_version: str = "3.12",
                 cuda: list[str] | None = None, limit_mib: float = SIZE_LIMIT_MIB) -> tuple[list[str], dict]:
    """(problems, summary) of a wheels folder against the pins: one wheel per pin, of that
    version, for the GPU machine's Python and platform, bitsandbytes trimmed to a CUDA
    library, all of it under the size limit. No problems: ready to travel."""
    pins = read_pins() if pins is None else pins
    cuda = cuda or ["130"]
    if not folder.is_dir():
        return [f"no wheels folder {folder}: build it with `python benchmarks/gpu_wheels.py --out {folder}`"], {}
    wheels = sorted(folder.glob("*.whl"))
    problems, found = [], {}
    for wheel in wheels:
        try:
            name, version, tags = _wheel_name_version(wheel)
        except ValueError as error:
            problems.append(str(error))
            continue
        if not zipfile.is_zipfile(wheel):
            problems.append(f"{wheel.name} is not a zip archive (a truncated download?)")
            continue
        if not _fits_the_gpu_machine(tags, python_version):
            problems.append(f"{wheel.name} is not for CPython {python_version} on x86_64 Linux")
        found.setdefault(name, []).append((version, wheel))
    for pin in pins:
        name, version = pin.split("==")
        name = re.sub(r"[-_.]+", "-", name).lower()
        versions = [found_version for found_version, _ in found.get(name, [])]
        if versions != [version]:
            problems.append(f"{pin}: found {versions or 'no wheel'}; rebuild with `python benchmarks/gpu_wheels.py`")
    for _, wheel in found.get("bitsandbytes", []):
        with zipfile.ZipFile(wheel) as archive:
            kinds = sorted({match.group(1) for name in archive.namelist() if (match := BNB_LIBRARY.search(name))})
        wanted = [f"cuda{release}" for release in cuda]
        if not set(wanted) <= set(kinds):
            problems.append(f"{wheel.name} has no library for CUDA {', '.join(cuda)} (it has {kinds})")
        elif set(kinds) - {"cpu", *wanted}:
            problems.append(f"{wheel.name} is not trimmed (libraries {kinds}); `python benchmarks/gpu_wheels.py` "
                            "trims it")
    size_mib = sum(wheel.stat().st_size for wheel in wheels) / 2**20
    if size_mib > limit_mib:
        problems.append(f"the wheels take {size_mib:.1f} MiB, over the {limit_mib} MiB left for them")
    summary = {"folder": str(folder), "wheels": [wheel.name for wheel in wheels], "size_mib": round(size_mib, 1)}
    return problems, summary


def main(out: Path, python_version: str, cuda: list[str], check_only: bool) -> int:
    pins = read_pins()
    if not check_only:
        download(pins, out, python_version)
        for wheel in out.glob("bitsandbytes-*.whl"):
            before, after = trim_bitsandbytes(wheel, cuda)
            print(f"{wheel.name}: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB (CUDA {', '.join(cuda)} only)")
    problems, summary = check_wheels(out, pins, python_version, cuda)
    print(f"{len(summary.get('wheels', []))} wheels in {out}, {summary.get('size_mib', 0)} MiB")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_FOLDER, help="the wheels folder (default: gpu-wheels/)")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    parser.add_argument("--cuda", default="130", help="CUDA releases whose bitsandbytes library to keep, comma "
                        "separated (torch.version.cuda without the dot there; default 130)")
    parser.add_argument("--check", action="store_true", help="only check an existing folder")
    args = parser.parse_args()
    if args.out.exists() and not args.check:
        shutil.rmtree(args.out)  # a stale wheel of another version would make two candidates
    sys.exit(main(args.out, args.python_version, args.cuda.split(","), args.check))
