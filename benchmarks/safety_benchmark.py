"""What the content filter and the disclosure marks add to one 1024² job, on the CPU.

Filter: the prompt check (built-in term list), the input-image check and the output-image
check, with the real classifier architecture — the ViT-base configuration of
Falconsai/nsfw_image_detection below, RANDOM weights (same FLOPs as the trained model; its
scores mean nothing), built once into --checkpoint and loaded through the same code path as
the real model. Then the classifier alone under the CPU options (threads, bf16, int8
dynamic quantisation, torch.compile). Marks: encoding a 1024² output with and without the
XMP/EXIF marks per format, splicing them into encoded bytes, and C2PA signing with a test
certificate chain. Prints tables; --write-results writes the section "Content safety and
AI disclosure (CPU)" of benchmarks/RESULTS.md.

    python benchmarks/safety_benchmark.py --runs 30 --write-results
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks_results import write_section  # noqa: E402
from helpers.c2pa_certs import write_test_chain  # noqa: E402

from pipelines.safety import ImageClassifierCheck, TermCheck  # noqa: E402
from server.media.c2pa_signing import load_c2pa_credentials, sign_c2pa  # noqa: E402
from server.media.disclosure import encode_marked, mark_encoded  # noqa: E402
from server.media.encode import encode_image  # noqa: E402
from server.media.provenance import Disclosure  # noqa: E402

#: config.json of Falconsai/nsfw_image_detection (ViT-B/16 at 224², two labels).
FALCONSAI_CONFIG = {
    "architectures": ["ViTForImageClassification"], "model_type": "vit",
    "attention_probs_dropout_prob": 0.0, "encoder_stride": 16, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0, "hidden_size": 768, "image_size": 224,
    "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-12,
    "num_attention_heads": 12, "num_channels": 3, "num_hidden_layers": 12, "patch_size": 16,
    "problem_type": "single_label_classification", "qkv_bias": True,
    "id2label": {"0": "normal", "1": "nsfw"}, "label2id": {"normal": 0, "nsfw": 1},
}
#: preprocessor_config.json of the same repository.
FALCONSAI_PREPROCESSOR = {
    "do_normalize": True, "do_rescale": True, "do_resize": True, "resample": 2,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "rescale_factor": 1 / 255, "size": {"height": 224, "width": 224},
}
MARKER = "BENCHMARK_RANDOM_CLASSIFIER"
PROMPT = ("Turn the photo into a watercolour painting: soft washes of blue for the sky, loose "
          "brush strokes on the trees, keep the people and the red bicycle in the foreground")


def build_classifier(directory: Path) -> Path:
    """Write the full-size classifier with random weights (once; ~343 MB)."""
    if (directory / MARKER).is_file():
        return directory
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    ViTForImageClassification(ViTConfig(**FALCONSAI_CONFIG)).save_pretrained(directory)
    ViTImageProcessor(**FALCONSAI_PREPROCESSOR).save_pretrained(directory)
    (directory / MARKER).write_text("Random weights, real Falconsai/nsfw_image_detection shapes.\n")
    return directory


def photo_like(size: int = 1024, seed: int = 0) -> Image.Image:
    """A smooth picture with fine grain: compresses like a photo, unlike pure noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * x + 2 * y), np.cos(5 * y - x), np.sin(3 * (x + y))], -1)
    pixels = 127 + 100 * base + rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def timed(fn: Callable[[], object], runs: int, warmup: int = 2) -> list[float]:
    """Milliseconds of each of `runs` calls, after `warmup` calls."""
    return timed_cpu(fn, runs, warmup)[0]


def timed_cpu(fn: Callable[[], object], runs: int, warmup: int = 2
              ) -> tuple[list[float], list[float]]:
    """(wall ms, process CPU ms summed over threads) of each of `runs` calls. CPU time does
    not count time spent waiting for a core, so it stays meaningful on a busy machine."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return wall, cpu


def p50_p95(samples: list[float]) -> tuple[float, float]:
    """Median and 95th percentile (linear interpolation)."""
    return statistics.median(samples), statistics.quantiles(samples, n=20,
                                                            method="inclusive")[18]


def row(label: str, samples: list[float] | tuple[list[float], list[float]]) -> str:
    """A table row: p50 and p95 of the wall times, and the median CPU time when given."""
    wall, cpu = samples if isinstance(samples, tuple) else (samples, None)
    p50, p95 = p50_p95(wall)
    return f"| {label} | {p50:.1f} | {p95:.1f} |" + (
        f" {statistics.median(cpu):.1f} |" if cpu is not None else "")


def filter_per_job(classifier: ImageClassifierCheck, runs: int
                   ) -> tuple[list[str], tuple[float, float]]:
    """Rows for the three checkpoints and their sum per job; returns (rows, (p50 wall ms,
    p50 CPU ms) of the sum)."""
    terms = TermCheck()
    source, output = photo_like(seed=1), photo_like(seed=2)
    checks = {"prompt (term list)": lambda: terms.check_text(PROMPT),
              "input image (classifier)": lambda: classifier.check_image(source),
              "output image (classifier)": lambda: classifier.check_image(output)}
    wall: dict[str, list[float]] = {name: [] for name in [*checks, "added per job"]}
    cpu: dict[str, list[float]] = {name: [] for name in wall}
    for _ in range(2):
        classifier.check_image(source)
    for _ in range(runs):
        for name, check in checks.items():
            start_cpu = time.process_time()
            wall[name].append(check().seconds * 1000)
            cpu[name].append((time.process_time() - start_cpu) * 1000)
        for table in (wall, cpu):
            table["added per job"].append(sum(table[name][-1] for name in checks))
    long_prompt = " ".join([PROMPT] * 30)[:4096]
    rows = [row(name, (wall[name], cpu[name])) for name in wall]
    rows.append(row("prompt of 4,096 characters (term list)",
                    timed_cpu(lambda: terms.check_text(long_prompt), runs)))
    return rows, (statistics.median(wall["added per job"]),
                  statistics.median(cpu["added per job"]))


def classifier_options(classifier: ImageClassifierCheck, runs: int, compile_too: bool
                       ) -> tuple[list[str], str]:
    """The classifier on one 1024² image under each option (same run); rows and a note."""
    import copy

    import torch

    image, original, device = photo_like(seed=3), classifier.model, classifier.device
    pixels = classifier.processor(images=classifier._pre_resize(image),
                                  return_tensors="pt")["pixel_values"].to(device)
    rows = [row("preprocessing only (resize 1024² → 224², normalise)",
                timed_cpu(lambda: classifier.processor(images=classifier._pre_resize(image),
                                                       return_tensors="pt"), runs))]

    def forward(model) -> tuple[list[float], list[float]]:
        def call() -> None:
            model(pixel_values=pixels.to(model.dtype))
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        with torch.inference_mode():
            return timed_cpu(call, runs)

    threads = "" if device.startswith("cuda") else f", {torch.get_num_threads()} threads"
    rows.append(row(f"forward, fp32 on {device}{threads} (default)", forward(original)))
    rows.append(row("forward, bf16 weights", forward(copy.deepcopy(original).to(torch.bfloat16))))
    note = ""
    if not device.startswith("cuda"):
        cpu_rows, note = cpu_only_options(original, forward)
        rows += cpu_rows
    if compile_too:
        start = time.perf_counter()
        compiled = torch.compile(original)
        forward(compiled)
        rows.append(f"| torch.compile: compilation + first runs | "
                    f"{(time.perf_counter() - start) * 1000:.0f} | — | — |")
        rows.append(row("forward, fp32, torch.compile (inductor)", forward(compiled)))
    return rows, note


def cpu_only_options(model, forward: Callable[[object], tuple]) -> tuple[list[str], str]:
    """Rows for one intra-op thread and for int8 dynamic quantisation of the Linear layers,
    and a note on what the goal takes."""
    import copy

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    single = forward(model)
    rows = [row("forward, fp32, 1 thread", single)]
    torch.set_num_threads(threads)
    # One thread cannot spin-wait for another: its CPU time is the forward's compute.
    note = (f"One forward is {statistics.median(single[1]) / 1000:.2f} core-seconds (1-thread "
            "CPU time): two per job, so the 60 ms goal needs about "
            f"{2 * statistics.median(single[1]) / 60:.0f} free cores, the GPU, or the input "
            "check overlapping the generation (then only the output check adds latency).")
    quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear},
                                                       dtype=torch.qint8)
    return [*rows, row("forward, int8 dynamic quantisation of the Linears",
                       forward(quantized))], note


def paired(plain: Callable[[], object], marked: Callable[[], object], runs: int
           ) -> tuple[list[float], list[float]]:
    """(ms of `plain`, ms `marked` took over `plain`) per run, the two calls alternating
    order each run, so that the machine's drift cancels out of the difference."""
    plain(), marked()
    base, extra = [], []
    for index in range(runs):
        times = {}
        for name, fn in ((("p", plain), ("m", marked)) if index % 2 else
                         (("m", marked), ("p", plain))):
            start = time.perf_counter()
            fn()
            times[name] = (time.perf_counter() - start) * 1000
        base.append(times["p"])
        extra.append(times["m"] - times["p"])
    return base, extra


def marking_costs(runs: int) -> list[str]:
    """Encode with vs without the marks, splice into bytes, C2PA signing; per format."""
    image, parent = photo_like(seed=4), encode_image(photo_like(seed=5), "jpeg")
    with tempfile.TemporaryDirectory() as folder:
        chain = write_test_chain(Path(folder))
        credentials = load_c2pa_credentials(chain.cert_file, chain.key_file)
    disclosure = Disclosure(edited=True)
    rows = []
    for fmt, progressive in (("jpeg", False), ("jpeg", True), ("png", False), ("webp", False)):
        plain = encode_image(image, fmt, progressive=progressive)
        marked = encode_marked(image, fmt, disclosure, progressive=progressive)
        mime = f"image/{fmt}"
        encode, at_encode = paired(
            lambda f=fmt, p=progressive: encode_image(image, f, progressive=p),
            lambda f=fmt, p=progressive: encode_marked(image, f, disclosure, progressive=p),
            runs)
        splice = timed(lambda b=plain: mark_encoded(b, disclosure), runs)
        created = timed(lambda b=marked, m=mime: sign_c2pa(
            b, m, Disclosure(edited=False), credentials), runs)
        edited = timed(lambda b=marked, m=mime: sign_c2pa(b, m, disclosure, credentials,
                                                          parent), runs)
        signed = sign_c2pa(marked, mime, disclosure, credentials, parent)
        rows.append(
            f"| {'progressive jpeg' if progressive else fmt} | {len(plain) / 1024:.0f} | "
            f"{statistics.median(encode):.1f} | {statistics.median(at_encode):+.1f} "
            f"({len(marked) - len(plain):+d} B) | {statistics.median(splice):.2f} | "
            f"{statistics.median(created):.1f} | {statistics.median(edited):.1f} "
            f"({len(signed) - len(marked):+d} B) |")
    return rows


def environment(device: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    if device.startswith("cuda"):
        cpu += f" + {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return (f"{cpu}, {os.cpu_count()} cores (torch threads {torch.get_num_threads()}); Python "
            f"{platform.python_version()}, torch {torch.__version__}, transformers "
            f"{version('transformers')}, Pillow {version('pillow')}, c2pa-python "
            f"{version('c2pa-python')}")


def busy_note(load: float) -> str:
    """A warning line when the run shared an oversubscribed machine, else ""."""
    cores = os.cpu_count() or 1
    if load <= cores:
        return ""
    return (f"**The machine was oversubscribed during this run (load average up to {load:.1f} "
            f"on {cores} cores, other work included): CPU timings of the classifier are "
            "inflated by waiting for a core.**")


def report(args: argparse.Namespace, where: str, busy: str, total: tuple[float, float],
           tables: tuple[list[str], tuple[list[str], str], list[str]]) -> list[str]:
    """The RESULTS.md section: what was measured, how, and the three tables."""
    filter_rows, (option_rows, note), mark_rows = tables
    command = "python benchmarks/safety_benchmark.py " + " ".join(sys.argv[1:])
    total_p50, total_cpu = total
    goal = "met" if total_p50 < 60 else "MISSED"
    return [
        "The content filter's added latency per 1024² job and the cost of the disclosure "
        f"marks, classifier on the {where}. The classifier is the real architecture of "
        "Falconsai/nsfw_image_detection (ViT-B/16 at 224², config in the script) with RANDOM "
        "weights: the same FLOPs, meaningless scores. Inputs and outputs are 1024² synthetic "
        "photos.", "", f"Command: `{command.strip()}`", "",
        f"Hardware: {environment(args.device)}.", "", busy, "",
        f"**Filter, per job** ({args.runs} runs; goal < 60 ms p50 added per job: {goal}, "
        f"{total_p50:.0f} ms):", "",
        "| checkpoint | p50 ms | p95 ms | CPU ms |", "|---|---|---|---|", *filter_rows, "",
        f"CPU time of one job's checks, p50: {total_cpu / 1000:.2f} s (all threads, their "
        "spin-waiting included).", "",
        "**Classifier options**, one 1024² image (CPU ms: process CPU time, all threads):", "",
        "| option | p50 ms | p95 ms | CPU ms |", "|---|---|---|---|", *option_rows, "", note, "",
        "**Disclosure marks**, 1024² output, medians in ms (bytes added). \"marks at encode\": "
        "encode_marked minus encode_image, the two alternating in one loop.", "",
        "| format | size KiB | encode | marks at encode | marks spliced into bytes | "
        "C2PA created | C2PA edit + parent |", "|---|---|---|---|---|---|---|", *mark_rows,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--checkpoint", type=Path,
                        default=Path(tempfile.gettempdir()) / "kontext-safety-bench")
    parser.add_argument("--device", default="cpu", help="where the classifier runs (cpu, cuda)")
    parser.add_argument("--compile", action="store_true",
                        help="also measure torch.compile (compiling takes minutes on 2 cores)")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    classifier = ImageClassifierCheck(str(build_classifier(args.checkpoint)),
                                      device=args.device)
    filter_rows, total = filter_per_job(classifier, args.runs)
    options = classifier_options(classifier, max(10, args.runs // 2), args.compile)
    mark_rows = marking_costs(args.runs)
    busy = busy_note(max(load_before, os.getloadavg()[0]))
    where = "GPU" if args.device.startswith("cuda") else "CPU"
    lines = report(args, where, busy, total, (filter_rows, options, mark_rows))
    print("\n".join(lines))
    if args.write_results:
        write_section(f"Content safety and AI disclosure ({where})", lines)


if __name__ == "__main__":
    main()
