"""docs/nginx-kontext.conf, run as written (only addresses and certificate paths changed)
by Debian's nginx on loopback in front of a real server: `nginx -t` accepts it, a job
goes through over TLS, and nginx applies the edge limits before the server sees a byte."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx2
import pytest
import trustme
from helpers.http import input_part, job_part
from helpers.images import image_bytes

DOCS = Path(__file__).parent.parent.parent / "docs"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                  else None)
CONFIG = {"prompt": "make it green", "width": 512, "height": 512, "steps": 1}

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def site_config(server_port: int, listen_port: int, cert: Path, key: Path) -> str:
    """The documented file with this machine's addresses and certificate."""
    text = (DOCS / "nginx-kontext.conf").read_text()
    for old, new in (("server 127.0.0.1:8000;", f"server 127.0.0.1:{server_port};"),
                     ("listen 443 ssl;", f"listen 127.0.0.1:{listen_port} ssl;"),
                     ("/etc/ssl/kontext/fullchain.pem", str(cert)),
                     ("/etc/ssl/kontext/privkey.pem", str(key))):
        assert old in text, old
        text = text.replace(old, new)
    return text


def main_config(root: Path) -> str:
    """What /etc/nginx/nginx.conf would be, unprivileged paths in `root`."""
    temps = "\n".join(f"    {name}_temp_path {root / name};"
                      for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"pid {root / 'nginx.pid'};\nerror_log {root / 'error.log'};\nuser root;\n"
            "worker_processes 1;\nevents { worker_connections 256; }\n"
            f"http {{\n    access_log off;\n{temps}\n    include {root / 'site.conf'};\n}}\n")


@pytest.fixture
def proxied(serve, tmp_path):
    """(https URL of nginx, the CA to trust) in front of a fresh server."""
    live = serve()
    ca = trustme.CA()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued = ca.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    port = free_port()
    (tmp_path / "site.conf").write_text(
        site_config(int(live.url.rsplit(":", 1)[1]), port, cert, key))
    (tmp_path / "nginx.conf").write_text(main_config(tmp_path))
    command = [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.PIPE,
                            text=True)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx2.get(f"{url}/healthz", verify=context, timeout=2)
            break
        except httpx2.TransportError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
    yield url, context
    proc.terminate()
    proc.wait(timeout=10)


def test_the_documented_nginx_config_serves_jobs_and_applies_the_limits(proxied):
    url, context = proxied
    with httpx2.Client(verify=context, timeout=60) as client:
        assert client.get(f"{url}/readyz").status_code == 200
        files = [input_part(image_bytes()), job_part(CONFIG)]
        job = client.post(f"{url}/v2/job", files=files, headers={"Accept": "image/png"})
        assert job.status_code == 200, job.text
        assert job.headers["content-type"] == "image/png"
        # Limits answered by nginx itself.
        big_header = client.get(f"{url}/healthz", headers={"X-Big": "a" * 64 * 1024})
        assert big_header.status_code in (400, 431)
        too_big = client.post(f"{url}/v2/job", content=b"x" * (13 * 1024 * 1024),
                              headers={"Content-Type": "application/json"})
        assert too_big.status_code == 413

