"""One prepared GPU run: the engine's GPU measurements in at most 7 minutes, one command.

Writes the JSON record after every step, so a run cut short still reports what it measured;
each step starts only if the time left covers its minimum, and a watchdog writes the record
and stops the process at the deadline. Steps, in priority order:

  1. versions and device facts
  2. micro-benchmarks: attention at [1, 24, 8704, 128] per backend; bf16 vs float8 row-wise
     GEMM at 8704×3072×12288 with the engine's settings (fast accumulation, its quantiser)
  3. the full-size model with RANDOM weights built on the GPU from seed 0 (no disk; rebuilt
     per engine, identical weights), eval(): stock diffusers, exact, fp8, turbo at 1024² with
     a 1 MP reference and 30 steps: build/load, warm-up (compile) time, two timed edits with
     per-forward CUDA events (a step cache's computed and predicted forwards apart), peaks
     counted from after the warm-up, then two other geometries, all under error_on_recompile
  4. deviation of every engine's output from the exact tier's: latents (relative L2) and
     decoded image (PSNR, SSIM); random weights are not trained weights
  5. the memory plans (meta device), then exact@24gb and exact@16gb under
     torch.cuda.set_per_process_memory_fraction, if time remains

    python benchmarks/gpu_run.py --out gpu_run.json               # one H100/H200, ≤ 7 min
    python benchmarks/gpu_run.py --tiny --cpu --size 256 --steps 2 --out smoke.json  # CPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: (name, minimum seconds it needs to be worth starting, expected minutes on one H100 with an
#: empty compile cache) in priority order. Expected: random init of the full model on the
#: GPU ~0.2 min per engine; a cold regional compile of the two block classes ~1 min; 30 steps
#: at the predicted 0.3–0.5 s/step; the two other geometries at 4 steps. 7.0 min in all, the
#: default --budget; benchmarks/gpu_session.sh adds the GPU tests after it (9 min in all).
STEPS = (("facts", 1, 0.1), ("micro_attention", 10, 0.1), ("micro_gemm", 10, 0.1),
         ("engine:stock", 45, 0.9), ("engine:exact", 120, 1.4), ("engine:fp8", 120, 1.3),
         ("engine:turbo", 45, 0.7), ("deviation", 1, 0.1), ("memory_plans", 30, 0.3),
         ("memory:24gb", 60, 0.8), ("memory:16gb", 90, 1.2))


@dataclass
class Context:
    """What every step sees: device, sizes, and the latents kept for the deviation step."""

    device: str
    tiny: bool
    size: int
    steps: int
    latents: dict = field(default_factory=dict)


class Record:
    """The JSON record, rewritten atomically after every change."""

    def __init__(self, path: Path, argv: list[str]) -> None:
        self.path, self.lock = path, threading.Lock()
        self.data: dict = {"command": "python benchmarks/gpu_run.py " + " ".join(argv),
                           "complete": False, "steps": {}}
        self.write()

    def write(self) -> None:
        with self.lock:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, default=str))
            os.replace(tmp, self.path)


def run_step(name: str, ctx: Context):
    """Dispatch one step by name to benchmarks/gpu_run_steps.py."""
    import gpu_run_steps as steps

    kind, _, arg = name.partition(":")
    if kind == "engine":
        return steps.measure_engine(ctx, arg)
    if kind == "memory":
        return steps.memory_mode(ctx, arg)
    return getattr(steps, name)(ctx)


def watchdog(record: Record, deadline: float, current: list[str]) -> None:
    """At the deadline: write the record, saying where it stopped, and end the process."""
    time.sleep(max(0.0, deadline - time.monotonic()))
    record.data["stopped"] = f"deadline reached during {current[0]}"
    record.write()
    os._exit(3)


def main(argv: list[str] | None = None) -> int:
    """Run every step that fits in the budget; 0 when all ran, 1 if a step failed."""
    args = parse_args(argv)
    started = time.monotonic()
    deadline = started + args.budget
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", args.inductor_cache
                          or tempfile.mkdtemp(prefix="gpu-run-inductor-"))
    record = Record(args.out, sys.argv[1:] if argv is None else argv)
    current = ["start"]
    threading.Thread(target=watchdog, args=(record, deadline, current), daemon=True).start()
    if args.cpu:
        _allow_cpu_float8()
    ctx = Context("cpu" if args.cpu else "cuda", args.tiny, args.size, args.steps)
    failed = False
    for name, minimum, _expected in STEPS:
        if name in args.skip:
            continue
        left = deadline - time.monotonic()
        if left < minimum:
            record.data["steps"][name] = {"skipped": f"{left:.0f}s left, needs {minimum}s"}
            record.write()
            continue
        current[0] = name
        print(f"== {name} ({left:.0f}s left)", flush=True)
        step_started = time.monotonic()
        try:
            result = run_step(name, ctx)
        except Exception as exc:  # one step's failure must not lose the others' results
            failed = True
            result = {"error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc(limit=8)}
        result["step_seconds"] = round(time.monotonic() - step_started, 1)
        record.data["steps"][name] = result
        record.write()
        print(json.dumps(result, default=str)[:2000], flush=True)
    record.data["complete"] = True
    record.data["wall_seconds"] = round(time.monotonic() - started, 1)
    record.write()
    return 1 if failed else 0


def _allow_cpu_float8() -> None:
    """CPU smoke run only: torch's CPU _scaled_mm computes float8 matmuls; torchao checks
    for a float8 GPU first, so its check is bypassed (never on a GPU run)."""
    from torchao.quantization import quant_api

    quant_api._check_hardware_support = lambda granularity: None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_run.json"))
    parser.add_argument("--budget", type=float, default=420, help="seconds for the whole run")
    parser.add_argument("--size", type=int, default=1024, help="output side (1 MP reference)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--tiny", action="store_true", help="tiny model (smoke run)")
    parser.add_argument("--cpu", action="store_true", help="run on CPU (smoke run)")
    parser.add_argument("--skip", default="", help="comma-separated step names to leave out")
    parser.add_argument("--inductor-cache", help="TORCHINDUCTOR_CACHE_DIR (default: a fresh, "
                        "empty one, so compile times are cold)")
    args = parser.parse_args(argv)
    args.skip = set(filter(None, args.skip.split(",")))
    return args


if __name__ == "__main__":
    raise SystemExit(main())
