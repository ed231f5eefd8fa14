"""Server memory after upstream "bombs": answers that make a forwarding server read or decode
as much as it allows, each refused with a clean 502. RSS before, at its peak, and idle after.

The server is `kontext serve`'s runner (allocator tuning included) around the tests' fake
engine, forwarding [pro] jobs to a fake hosted upstream on loopback (HTTPS) that answers
every job with the same bomb:

- `50 MB chunked`: a chunked body of 60 MB (no Content-Length): read up to the 50 MB cap;
- `40 MB part`: a multipart answer whose `output` part is 40 MB of junk (under the cap);
- `4096² PNG`: a 4096 × 4096 PNG (the largest upstream image) cut before its end, asked
  for as JPEG: decoded, 48 MB of pixels, until its data runs out;
- `2 GB declared`: a Content-Length of 2 GB, 1 KiB sent.

    PYTHONPATH=$PWD:$PWD/tests .venv/bin/python benchmarks/upstream_bombs.py --bombs 100 \\
        [--write-results]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
from benchmarks_results import write_section
from edge_benchmark import CHOSEN, Server, command_for, free_port
from edge_probes import MIB, MemoryWatch
from helpers.fake_upstream import Declares, FakeUpstream, multipart
from PIL import Image
from starlette.responses import Response, StreamingResponse

PRO = "inference.flux-kontext.pro.img2img.v2"
TOKEN = "bench-upstream-token-5a1e9c"
MB = 1000 * 1000


def _chunked(seen, fake) -> Response:
    block = os.urandom(64 * 1024)
    return StreamingResponse(iter([block] * (60 * MB // len(block))),
                             media_type="image/png")


def _big_part(seen, fake) -> Response:
    return multipart([("job", b'{"id": "bomb"}', "job.json", "application/json"),
                      ("output", os.urandom(40 * MB), "output.png", "image/png")])


def _cut_png() -> bytes:
    noise = Image.frombytes("RGB", (4096, 4096), os.urandom(4096 * 4096 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG", compress_level=1)
    data = buffer.getvalue()
    return data[: len(data) * 9 // 10]


BOMBS = {
    "50 MB chunked": lambda: _chunked,
    "40 MB part": lambda: _big_part,
    "4096² PNG": lambda: (lambda png: lambda seen, fake: Response(png, media_type="image/png")
                          )(_cut_png()),
    "2 GB declared": lambda: lambda seen, fake: Declares(2 * 1000 * MB),
}


def _send(port: int) -> int:
    files = [("input", ("in.png", _INPUT, "image/png")),
             ("job", ("job.json", b'{"type": "%s", "config": {"prompt": "a bomb"}}'
                      % PRO.encode(), "application/json"))]
    reply = httpx2.post(f"http://127.0.0.1:{port}/v2/job", files=files, timeout=120,
                       headers={"Authorization": f"Bearer {TOKEN}", "Accept": "image/jpeg"})
    return reply.status_code


_buffer = io.BytesIO()
Image.new("RGB", (640, 480), (20, 90, 200)).save(_buffer, "PNG")
_INPUT = _buffer.getvalue()


def run_bombs(fake: FakeUpstream, kind: str, count: int, parallel: int) -> list[str]:
    """`count` jobs answered with bomb `kind`, `parallel` at once, on a fresh server."""
    handler = BOMBS[kind]()
    fake.script["hosted"] = [handler] * (count + 1)
    port = free_port()
    env = {"KONTEXT_UPSTREAM": "hosted", "KONTEXT_HOSTED_URL": f"{fake.url()}/v2",
           "KONTEXT_HOSTED_TOKEN_ENV": "BENCH_HOSTED_TOKEN", "BENCH_HOSTED_TOKEN": TOKEN,
           "KONTEXT_UPSTREAM_CA_FILE": str(fake.ca_file), "KONTEXT_TOKENS": TOKEN,
           "KONTEXT_UPSTREAM_MAX_IN_FLIGHT": str(parallel), "KONTEXT_UPSTREAM_TIMEOUT": "5",
           # one client sends every bomb: its share of the forwarded jobs is the whole lane
           "KONTEXT_CLIENT_SHARE": "1"}
    with Server(command_for(CHOSEN, port), port, env) as server:
        pid = server.proc.pid
        _send(port)  # one job first: imports, pools and buffers in place
        with MemoryWatch(pid) as watch:
            before = watch.now()
            started = time.monotonic()
            with ThreadPoolExecutor(parallel) as pool:
                statuses = Counter(pool.map(lambda _: _send(port), range(count)))
            seconds = time.monotonic() - started
        time.sleep(2)  # idle
        idle = [MemoryWatch(pid).now() for _ in range(3) if not time.sleep(0.5)]
    after = statistics.median(idle)
    row = [kind, str(count), str(parallel), str(dict(statuses)), f"{seconds:.1f}",
           f"{before / MIB:.0f}", f"{watch.peak / MIB:.0f}", f"{after / MIB:.0f}",
           f"{(after - before) / MIB:+.0f}"]
    print(" | ".join(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bombs", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--kinds", nargs="*", default=list(BOMBS))
    parser.add_argument("--label", default="")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        fake = FakeUpstream(Path(workdir)).start()
        try:
            rows = [run_bombs(fake, kind, args.bombs, args.parallel) for kind in args.kinds]
        finally:
            fake.stop()
    header = ["| bomb | jobs | at once | answers | seconds | RSS before (MiB) | peak | idle "
              "after | idle − before |", "|---|---|---|---|---|---|---|---|---|"]
    table = header + ["| " + " | ".join(row) + " |" for row in rows]
    print("\n".join(table))
    if args.write_results:
        write_section(f"Upstream bombs{(' — ' + args.label) if args.label else ''}", [
            f"Command: `PYTHONPATH=$PWD:$PWD/tests python benchmarks/upstream_bombs.py "
            f"--bombs {args.bombs} --parallel {args.parallel} --write-results`", "",
            f"Hardware: {platform.machine()}, {os.cpu_count()} cores; Python "
            f"{sys.version.split()[0]}.", "", *table])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
