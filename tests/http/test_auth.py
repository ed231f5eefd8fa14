"""Bearer tokens from settings and a token file; open probes; the open-bind refusal."""

from __future__ import annotations

import time

import httpx2
import pytest
from helpers.http import post_job
from helpers.images import image_bytes
from helpers.raw_http import connect, read_answer
from helpers.servers import make_settings

from server.cli.main import main
from server.cli.serve import ServeRefused, check_serving_safety
from server.settings import is_loopback
from server.settings.tokens import TokenFileError, configured_tokens, open_bind_refusal

PNG = image_bytes(640, 480)
CONFIG = {"prompt": "make it blue", "width": 512, "height": 512, "steps": 2}


def assert_401(reply: httpx2.Response) -> None:
    assert reply.status_code == 401, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    assert "token is invalid" in reply.text


def test_auth_off_serves_without_a_token(serve):
    live = serve()
    assert post_job(live.url, CONFIG, PNG).status_code == 200
    assert post_job(live.url, CONFIG, PNG, token="anything").status_code == 200


def test_auth_on_accepts_each_configured_token_only(serve):
    live = serve(tokens=["alpha-token-31f9c0e2", "beta-token-7d2a61b4c"])
    for token in ("alpha-token-31f9c0e2", "beta-token-7d2a61b4c"):
        assert post_job(live.url, CONFIG, PNG, token=token).status_code == 200
    for token in (None, "wrong", "alpha-token-31f9c0e2-and-more", "alpha"):
        assert_401(post_job(live.url, CONFIG, PNG, "multipart/form-data", token=token))
    basic = httpx2.post(f"{live.url}/v2/job", json={},
                       headers={"Authorization": "Basic alpha-token-31f9c0e2"})
    assert_401(basic)


def test_token_file_with_comments(serve, tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# operators\nfile-token-1-4f3e2d1c  # alice\n\n   \n"
                    "file-token-2-8a9b0c1d\n#commented-out\n")
    live = serve(tokens=["env-token-9a0b1c2d3e"], token_file=path)
    for token in ("env-token-9a0b1c2d3e", "file-token-1-4f3e2d1c", "file-token-2-8a9b0c1d"):
        assert post_job(live.url, CONFIG, PNG, token=token).status_code == 200
    for token in ("commented-out", "alice", "# operators"):
        assert_401(post_job(live.url, CONFIG, PNG, token=token))


def test_configured_tokens_merges_and_deduplicates(tmp_path):
    path = tmp_path / "tokens"
    a, b, c = ("token-a-0123456789", "token-b-0123456789", "token-c-0123456789")
    path.write_text(f"{b}\n{c}\n{b}\n")
    settings = make_settings(tokens=f"{a}, {b}", token_file=path)
    assert configured_tokens(settings) == (a, b, c)
    with pytest.raises(TokenFileError, match="cannot read the token file"):
        configured_tokens(make_settings(token_file=tmp_path / "missing"))


def test_probes_open_by_default_and_closable(serve):
    live = serve(tokens=["probe-token-6e5d4c3b"])
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx2.get(live.url + path).status_code == 200
    # Not waited for: its /readyz needs the token (the fake engine loads at once).
    closed = serve(tokens=["probe-token-6e5d4c3b"], open_probes=False, wait_ready=False)
    bearer = {"Authorization": "Bearer probe-token-6e5d4c3b"}
    deadline = time.monotonic() + 10
    while httpx2.get(closed.url + "/readyz", headers=bearer).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert_401(httpx2.get(closed.url + path))
        assert httpx2.get(closed.url + path, headers=bearer).status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts_may_run_open(host):
    assert is_loopback(host)
    assert open_bind_refusal(make_settings(host=host), ()) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.internal"])
def test_open_bind_refused_unless_tokens_or_allow_open(host):
    settings = make_settings(host=host)
    with pytest.raises(ServeRefused, match="--allow-open"):
        check_serving_safety(settings)
    assert check_serving_safety(make_settings(host=host, tokens="token-t1-0123456789")) == (
        "token-t1-0123456789",)
    assert check_serving_safety(make_settings(host=host, allow_open=True)) == ()


def test_kontext_serve_refuses_open_bind_before_loading(capsys):
    # Exits before any engine is built: the message is the whole answer.
    assert main(["serve", "--host", "0.0.0.0", "--demo"]) == 2
    err = capsys.readouterr().err
    assert "refusing to bind 0.0.0.0 with no tokens configured" in err


def test_tokens_flag_a_comma_b_accepts_both_and_no_empty_bearer(serve):
    from server.cli.main import build_parser
    from server.cli.settings_flags import settings_from_args

    a, b = "token-a-0123456789", "token-b-0123456789"
    parsed = settings_from_args(build_parser().parse_args(["serve", "--tokens", f"{a}, {b}"]))
    live = serve(tokens=parsed.tokens)
    for token in (a, b):
        assert post_job(live.url, CONFIG, PNG, token=token).status_code == 200
    for header in ("Bearer", f"Bearer {a},{b}", f"Bearer  {a}, {b}"):
        reply = httpx2.post(f"{live.url}/v2/job", json={}, headers={"Authorization": header})
        assert_401(reply)
    for request in ("POST /v2/job", "GET /v2/job/async/x/job.json"):
        with connect(live.url) as sock:  # `Bearer ` and nothing: httpx2 will not send it
            sock.sendall(f"{request} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \r\n"
                         "Content-Length: 0\r\n\r\n".encode())
            answer = read_answer(sock)
        assert answer.status == 401 and b"token is invalid" in answer.body


def test_a_token_file_of_blanks_is_refused_before_loading(tmp_path):
    blanks = tmp_path / "tokens"
    blanks.write_text("\n \n# nobody\n")
    with pytest.raises(ServeRefused, match=r"holds no token \(only blank lines or comments\)"):
        check_serving_safety(make_settings(token_file=blanks))
