"""`kontext probe` (the container's HEALTHCHECK) against a real server in each probe mode:
the probe port, closed probes with a token, and the settings read off the running server's
own command line (`--args-of PID`)."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import urlsplit

from helpers.async_api import wait_until

from server.cli.main import main

TOKEN = "probe-cli-token-4b7e1d"


def test_closed_probes_on_the_probe_port_need_the_token(serve, capsys):
    # Not waited for by the fixture: its /readyz needs the token.
    live = serve(tokens=[TOKEN], open_probes=False, probe_port=0, wait_ready=False)
    ports = ["--port", str(urlsplit(live.url).port),
             "--probe-port", str(live.kontext.probe_port), "--no-open-probes"]
    wait_until(lambda: main(["probe", *ports, "--tokens", TOKEN]) == 0, what="ready")
    capsys.readouterr()
    assert main(["probe", *ports, "--tokens", TOKEN]) == 0
    assert capsys.readouterr().out.startswith(
        f"ok: 200 from http://127.0.0.1:{live.kontext.probe_port}/readyz")
    assert main(["probe", "--live", *ports, "--tokens", TOKEN]) == 0
    assert "/healthz" in capsys.readouterr().out
    # Without the token the server says 401, and the probe fails with it.
    assert main(["probe", *ports]) == 1
    assert capsys.readouterr().out.startswith("failed: 401 ")


def test_the_settings_come_from_the_served_command_line(serve, capsys):
    live = serve()
    port = str(urlsplit(live.url).port)
    # A stand-in process whose command line is a `serve` with the live server's port.
    stand_in = subprocess.Popen([sys.executable, "-c",
                                 "import sys; print('up', flush=True); sys.stdin.read()",
                                 "serve", "--host", "0.0.0.0", "--port", port],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    # Its first line comes after exec: until then its command line is still pytest's.
    assert stand_in.stdout.readline() == b"up\n"
    try:
        assert main(["probe", "--args-of", str(stand_in.pid)]) == 0
        assert f"http://127.0.0.1:{port}/readyz" in capsys.readouterr().out
        # The probe's own flags win over the process's.
        assert main(["probe", "--args-of", str(stand_in.pid), "--port", "1"]) == 1
        assert "no answer from http://127.0.0.1:1/readyz" in capsys.readouterr().out
    finally:
        stand_in.communicate(b"")
    assert main(["probe", "--args-of", str(stand_in.pid)]) == 2  # gone: nothing to read
    assert "cannot read" in capsys.readouterr().err
