"""A connection flood must not take the probes down: with the main port at
--max-connections, /healthz, /readyz and /metrics still answer on the probe port, which
serves nothing else."""

from __future__ import annotations

import contextlib

import httpx2
from helpers.async_api import wait_until
from helpers.raw_http import connect, read_answer
from test_observability import samples, value


def test_probes_answer_on_their_port_while_the_main_port_is_full(serve):
    live = serve(max_connections=6, probe_port=0, header_timeout_seconds=120)
    probes = f"http://127.0.0.1:{live.kontext.probe_port}"
    connections = live.server.server_state.connections
    with contextlib.ExitStack() as flood:
        for _ in range(6):  # half-open: connected, nothing sent, as a flood's are
            flood.enter_context(connect(live.url))
        wait_until(lambda: len(connections) >= 6, what="the main port full")
        with connect(live.url) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(sock).status == 503  # the main port's probe is refused
        for path in ("/healthz", "/readyz", "/metrics"):
            assert httpx2.get(f"{probes}{path}", timeout=10).status_code == 200, path
    # The edge's own refusal is counted with every other 5xx.
    found = samples(live)
    assert value(found, "kontext_http_errors_total", status="503", reason="max_connections") == 1
    # Only the probes are there: no job, no playground, no docs.
    for path in ("/v2/job", "/", "/docs"):
        assert httpx2.get(f"{probes}{path}", timeout=10).status_code == 404, path
    assert httpx2.get(f"{live.url}/healthz").status_code == 200


def test_no_probe_port_unless_asked(serve):
    live = serve()
    assert live.kontext.probe_port is None
    assert len(live.server.servers) == 1  # one listener
