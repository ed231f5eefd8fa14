"""`kontext edit`: one edit from the shell, against a real server (as a real process, with
the token from KONTEXT_TOKEN) and in-process on the tiny checkpoint (--local --demo)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.http import image_of, post_job
from helpers.images import gradient_png
from helpers.live_server import start_server
from helpers.servers import make_settings
from PIL import Image

from server.api.app import create_app
from server.cli.main import main
from server.jobs.backends.local import DEMO_NOTICE

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "edit-cli-token-7f3a"


@pytest.fixture(scope="module")
def live(tiny_engine):
    server = start_server(create_app(make_settings(tokens=[TOKEN]), tiny_engine))
    yield server
    server.stop()


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(gradient_png(480, 360))
    return path


def kontext_edit(*args: str, token: str | None = TOKEN, cwd: Path = ROOT
                 ) -> subprocess.CompletedProcess:
    """`kontext edit ...` as a real process (not a terminal: plain progress lines)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}
    if token is not None:
        env["KONTEXT_TOKEN"] = token
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "server.cli.main", "edit", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def test_edit_through_a_server_is_the_servers_edit(live, photo, tmp_path):
    out = tmp_path / "edited.png"
    done = kontext_edit(str(photo), "make the sky stormy", "--server", live.url, "-o",
                        str(out), "--seed", "5", "--width", "528", "--height", "512",
                        "--steps", "2")
    assert done.returncode == 0, done.stderr
    # The server runs the tiny checkpoint: its notice is said too.
    assert done.stdout.splitlines() == ["seed: 5", f"wrote: {out} (528x512)",
                                        f"notice: {DEMO_NOTICE}"]
    # Progress came from the job's events: every step, in order.
    assert re.findall(r"^step (\d)/2", done.stderr, re.M)[-2:] == ["1", "2"], done.stderr
    # The same config through POST /v2/job gives the same bytes: one edit, one meaning.
    config = {"prompt": "make the sky stormy", "seed": 5, "width": 528, "height": 512,
              "steps": 2}
    direct = post_job(live.url, config, photo.read_bytes(), "image/png", token=TOKEN)
    assert out.read_bytes() == direct.content
    assert image_of(out.read_bytes()).size == (528, 512)


def test_config_errors_are_checked_first_in_the_servers_words(live, photo):
    done = kontext_edit(str(photo), "make it red", "--server", live.url, "--width", "1000")
    assert done.returncode == 2
    server_says = post_job(live.url, {"prompt": "make it red", "width": 1000},
                           photo.read_bytes(), "application/json", token=TOKEN).json()["error"]
    assert done.stderr.strip() == f"kontext edit: {server_says}"


def test_a_wrong_token_is_the_servers_refusal(live, photo):
    done = kontext_edit(str(photo), "make it red", "--server", live.url, token="wrong")
    assert done.returncode == 1
    assert "HTTP 401" in done.stderr and "token is invalid" in done.stderr


#: Third-party start-up messages that mean nothing to a user (pipelines/engine/quiet.py).
NOISE = ("_C_mxfp8", "Detected no triton", "is an Enum subclass", "Unable to import `torchao`",
         "Attention backends are an experimental", "peft_config", "Traceback")


def test_local_edit_on_the_tiny_checkpoint_is_quiet_and_says_demo(tiny_dir, photo, tmp_path):
    done = kontext_edit(str(photo), "add a bowler hat", "--local", "--demo", "--demo-dir",
                        str(tiny_dir), "--width", "528", "--height", "512", "--steps", "1",
                        "--seed", "9", "-o", "hat.jpg", "--log-level", "warning", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["seed: 9", "wrote: hat.jpg (528x512)",
                                        f"notice: {DEMO_NOTICE}"]
    assert "step 1/1" in done.stderr
    assert not [noise for noise in NOISE if noise in done.stderr], done.stderr
    edited = image_of((tmp_path / "hat.jpg").read_bytes())
    assert edited.format == "JPEG" and edited.size == (528, 512)


def test_a_phone_photo_is_shrunk_and_edited_in_its_own_shape(live, tmp_path):
    phone = tmp_path / "IMG_0001.jpg"
    Image.new("RGB", (4032, 3024), (90, 140, 200)).save(phone, quality=80)
    done = kontext_edit(str(phone), "add a bowler hat", "--server", live.url, "--steps", "1",
                        cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ("kontext edit: IMG_0001.jpg is 4032x3024, over the 1920 px a side a /v2/job server "
            "takes: sent as 1920x1440, same shape") in done.stderr.splitlines()
    assert done.stdout.splitlines()[1] == f"wrote: {tmp_path / 'IMG_0001-edited.png'} (1040x784)"
    assert image_of((tmp_path / "IMG_0001-edited.png").read_bytes()).size == (1040, 784)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate and its key: c2pa refuses to sign with it."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("self-signed")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def _setup_refusal(argv: list[str], capsys) -> str:
    """Run `kontext edit ...` in this process: exit 2, and the one line it ends with."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_local_setup_errors_are_one_line_and_exit_2(tiny_dir, photo, tmp_path, self_signed,
                                                    capsys):
    edit = ["edit", str(photo), "add a hat", "--local", "--log-level", "error"]
    demo = [*edit, "--demo", "--demo-dir", str(tiny_dir)]
    cert, key = self_signed
    line = _setup_refusal([*demo, "--c2pa-cert", str(cert), "--c2pa-key", str(key)], capsys)
    assert line.startswith("kontext edit: C2PA signing failed:") and "docs/safety.md" in line
    line = _setup_refusal([*demo, "--safety", "block", "--safety-model",
                           str(tmp_path / "nowhere")], capsys)
    assert line.startswith("kontext edit: Safety image classifier") and "no such folder" in line
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text('{"_class_name": "x"}')
    line = _setup_refusal([*edit, "--weights", str(tmp_path / "broken")], capsys)
    assert line.startswith(f"kontext edit: {tmp_path / 'broken'} cannot be loaded: missing ")
    # Settings in our words: the flag and its environment variable, never pydantic's text.
    line = _setup_refusal([*demo, "--safety-threshold", "2"], capsys)
    assert line == ("kontext edit: --safety-threshold (KONTEXT_SAFETY_THRESHOLD): must be at "
                    "most 1, got '2'")


def test_an_edit_sent_while_the_server_loads_waits_for_it(serve, photo, tmp_path):
    from helpers.fake_engine import FakeEngine

    engine = FakeEngine()
    engine.hold_load()
    live = serve(engine, wait_ready=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}
    edit = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "edit", str(photo), "add a hat", "--server",
         live.url, "--steps", "1", "-o", str(tmp_path / "hat.png")],
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        said = edit.stderr.readline()  # blocks until the client says it is waiting
        assert said.startswith("kontext edit: the server is still loading its model"), said
        engine.release_load()
        out, err = edit.communicate(timeout=120)
    finally:
        edit.kill()
    assert edit.returncode == 0, err
    assert out.splitlines()[1] == f"wrote: {tmp_path / 'hat.png'} (1040x784)"


def test_no_server_says_how_to_start_one(photo):
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = kontext_edit(str(photo), "add a hat", "--server", f"http://127.0.0.1:{port}")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"kontext edit: no server answers at http://127.0.0.1:{port} (")
    assert "./scripts/demo.sh or kontext serve" in done.stderr


def test_model_picks_the_klein_edit(serve, kontext_and_klein, photo, tmp_path):
    live = serve(kontext_and_klein)
    out = tmp_path / "klein.png"
    done = kontext_edit(str(photo), "make it night", "--server", live.url, "-o", str(out),
                        "--model", "klein-4b", "--seed", "2", token=None)
    assert done.returncode == 0, done.stderr
    # A klein edit without a size takes its input's (multiples of 16).
    assert done.stdout.splitlines()[:2] == ["seed: 2", f"wrote: {out} (480x352)"]
    assert image_of(out.read_bytes()).size == (480, 352)
    refused = kontext_edit(str(photo), "make it night", "--server", live.url,
                           "--type", "inference.flux-2.klein.4b.img2img.v1",
                           "--guidance-scale", "3", token=None)
    assert refused.returncode == 2
    assert "config.guidance_scale: unknown field" in refused.stderr


def test_local_klein_edit_serves_its_model(tiny_dir, photo, tmp_path, capsys):
    out = tmp_path / "local-klein.png"
    code = main(["edit", str(photo), "make it night", "--local", "--demo", "--demo-dir",
                 str(tiny_dir), "--model", "klein-4b", "--seed", "3", "-o", str(out),
                 "--log-level", "warning"])
    assert code == 0, capsys.readouterr().err
    assert image_of(out.read_bytes()).size == (480, 352)
