"""How much latency the HTTP server adds to a dev-kontext edit (tiny checkpoint, CPU).

Runs the same 1024² edit (a) as a direct in-process engine call and (b) through a real
server on loopback with a multipart request and a 1024² JPEG answer, alternating. The
server's added latency is taken per request: the client's round trip minus the engine time
the server measured for that same job (`metrics.elapsed`), so the engine's run-to-run
jitter (larger than the overhead on a CPU) cancels out. Prints p50/p95 and writes the
section "HTTP overhead" of benchmarks/RESULTS.md.

    python benchmarks/http_overhead.py --runs 30
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx2
from PIL import Image
from requests_toolbelt.multipart.decoder import MultipartDecoder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks_results import write_section  # noqa: E402
from helpers.live_server import start_server  # noqa: E402

from pipelines.contract import RunControl  # noqa: E402
from pipelines.engine.kontext import KontextEngine  # noqa: E402
from pipelines.engine.options import EngineOptions  # noqa: E402
from pipelines.weights.source import resolve_weights  # noqa: E402
from pipelines.weights.tiny import write_tiny_checkpoint  # noqa: E402
from server.api.app import create_app  # noqa: E402
from server.jobs.backends.local import edit_request  # noqa: E402
from server.jobs.prepared import prepare  # noqa: E402
from server.settings import Settings  # noqa: E402

DEV = "inference.flux-fast.dev-kontext.img2img.v1"


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    ordered = sorted(values)
    index = (len(ordered) - 1) * q
    low, high = int(index), min(int(index) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()

    checkpoint = write_tiny_checkpoint(Path(tempfile.mkdtemp()) / "tiny")
    engine = KontextEngine(resolve_weights(str(checkpoint)), EngineOptions(device="cpu", demo=True))
    live = start_server(create_app(Settings(warmup=True, warmup_steps=1), engine))
    source = io.BytesIO()
    Image.linear_gradient("L").resize((1024, 1024)).convert("RGB").save(source, "PNG")
    png = source.getvalue()
    config = {"prompt": "make the sky stormy", "width": 1024, "height": 1024,
              "steps": args.steps, "seed": 1}
    request = edit_request(prepare(DEV, config), Image.open(io.BytesIO(png)).convert("RGB"))
    files = [("input", ("in.png", png, "image/png")),
             ("job", ("job.json", json.dumps({"type": DEV, "config": config}),
                      "application/json"))]
    direct, http, engine_side = [], [], []
    with httpx2.Client(timeout=120) as client:
        for _ in range(args.runs + 2):  # first two of each are warm-up
            started = time.perf_counter()
            engine.run(request, RunControl())
            direct.append(time.perf_counter() - started)
            started = time.perf_counter()
            reply = client.post(f"{live.v2}/job", files=files,
                                headers={"Accept": "multipart/form-data; image/jpeg"})
            http.append(time.perf_counter() - started)
            assert reply.status_code == 200, reply.text
            parts = MultipartDecoder(reply.content, reply.headers["content-type"]).parts
            assert parts[1].content[:2] == b"\xff\xd8"
            engine_side.append(json.loads(parts[0].content)["metrics"]["elapsed"])
        # The demo promise: a default 1024², 30-step edit in seconds on a CPU.
        full = [("job", ("job.json", json.dumps({"type": DEV, "config": {**config, "steps": 30}}),
                         "application/json")), files[0]]
        demo = []
        for _ in range(3):
            started = time.perf_counter()
            assert client.post(f"{live.v2}/job", files=full).status_code == 200
            demo.append(time.perf_counter() - started)
    live.stop()
    direct, http, engine_side = direct[2:], http[2:], engine_side[2:]
    added = [(h - e) * 1000 for h, e in zip(http, engine_side, strict=True)]
    rows = [
        ("direct engine.run (ms)", statistics.median(direct) * 1000,
         percentile(direct, 0.95) * 1000),
        ("HTTP round trip (ms)", statistics.median(http) * 1000, percentile(http, 0.95) * 1000),
        ("added by the server (ms)", percentile(added, 0.5), percentile(added, 0.95)),
        ("1024², 30-step demo edit over HTTP (ms; median, max of 3)",
         statistics.median(demo) * 1000, max(demo) * 1000),
    ]
    table = ["| measure | p50 | p95 |", "|---|---|---|"]
    table += [f"| {name} | {p50:.1f} | {p95:.1f} |" for name, p50, p95 in rows]
    print("\n".join(table))
    import diffusers
    import torch

    write_section("HTTP overhead", [
        "Same 1024² dev-kontext edit (tiny checkpoint, CPU, "
        f"{args.steps} steps, {args.runs} runs after 2 warm-up runs), direct engine call vs "
        "multipart POST to a real server on loopback answering a 1024² JPEG; runs alternate.",
        "Added latency = each request's round trip minus the engine time the server reported "
        "for that job (`metrics.elapsed`): multipart parsing, PNG decode of the input, "
        "validation, queue hand-off, JPEG encode of the output, multipart encoding and the "
        "transfer. Goal: under 20 ms p50.",
        "",
        f"Command: `python benchmarks/http_overhead.py --runs {args.runs} --steps {args.steps}`",
        "",
        f"Hardware: {platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} cores; Python {platform.python_version()}, "
        f"torch {torch.__version__}, diffusers {diffusers.__version__}.",
        "",
        *table,
    ])


if __name__ == "__main__":
    main()
