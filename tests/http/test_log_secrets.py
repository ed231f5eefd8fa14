"""Secrets and the logs: a token never appears in any field of any line (the request id
included), tokens too short to redact safely are refused at startup, and redaction never
garbles the lines around it."""

from __future__ import annotations

import json
import logging

import httpx2
import pytest
from helpers.http import post_job
from helpers.images import image_bytes
from pydantic import ValidationError
from test_observability import captured_logs

from server.cli.main import main
from server.cli.serve import ServeRefused, check_serving_safety
from server.settings import Settings

PNG = image_bytes(640, 480)
CONFIG = {"prompt": "make it blue", "width": 512, "height": 512, "steps": 1}
TOKEN = "tok-4e1d9a7c-0b52-never-log"
#: A token with characters that JSON escapes: its escaped form must not slip through.
QUOTED_TOKEN = 'tok"with\\quote-5f0c2e81'


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_token_sent_as_request_id_is_never_logged(serve, fmt):
    live = serve(tokens=[TOKEN, QUOTED_TOKEN])
    with captured_logs(fmt, [TOKEN, QUOTED_TOKEN]) as stream:
        for token in (TOKEN, QUOTED_TOKEN):
            reply = httpx2.post(f"{live.url}/v2/job", json={"type": "x", "config": {}},
                               headers={"Authorization": f"Bearer {token}",
                                        "X-Request-ID": token})
            assert reply.status_code == 400
    text = stream.getvalue()
    assert TOKEN not in text and QUOTED_TOKEN not in text
    assert json.dumps(QUOTED_TOKEN)[1:-1] not in text  # as JSON writes it
    assert "job refused" in text and "[redacted]" in text


def test_every_field_of_a_line_is_redacted(serve):
    live = serve(tokens=[TOKEN], log_prompts=True)
    with captured_logs("json", [TOKEN]) as stream:
        reply = post_job(live.url, {**CONFIG, "prompt": f"write {TOKEN} on the wall"}, PNG,
                         token=TOKEN)
        assert reply.status_code == 200
        logging.getLogger("careless").warning("extra fields", extra={
            "nested": {"list": [TOKEN]}, "plain": TOKEN})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    accepted = next(line for line in lines if line["message"] == "job accepted")
    assert accepted["config"]["prompt"] == "write [redacted] on the wall"
    careless = next(line for line in lines if line["message"] == "extra fields")
    assert careless["nested"] == {"list": ["[redacted]"]} and careless["plain"] == "[redacted]"
    assert TOKEN not in stream.getvalue()


def test_redaction_leaves_other_text_alone(serve):
    # Tokens are long enough (16+ characters) never to match ordinary log text by chance.
    live = serve(tokens=[TOKEN])
    with captured_logs("text", [TOKEN]) as stream:
        assert post_job(live.url, CONFIG, PNG, token=TOKEN).status_code == 200
        logging.getLogger("plain").info("a line about tokens, tok, -never- and log")
    text = stream.getvalue()
    assert "a line about tokens, tok, -never- and log" in text
    assert "job completed" in text and "[redacted]" not in text


@pytest.mark.parametrize("short", ["a", "s3cret", "fifteen-chars-x"])
def test_short_tokens_are_refused_at_startup(short, tmp_path, capsys):
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(tokens=[short])
    assert main(["serve", "--demo", "--tokens", short]) == 2
    assert "at least 16 characters" in capsys.readouterr().err
    file = tmp_path / "tokens"
    file.write_text(f"# team tokens\n{TOKEN}\n{short}\n")
    with pytest.raises(ServeRefused, match=r"line 3: .* at least 16 characters"):
        check_serving_safety(Settings(token_file=file))


@pytest.mark.parametrize("bad", ["sixteen chars ok", "tab\there-0123456789", "naïve-0123456789ab"])
def test_tokens_are_visible_ascii_without_spaces(bad):
    with pytest.raises(ValidationError, match="visible ASCII"):
        Settings(tokens=[bad])


def test_request_ids_are_bounded_and_plain(serve):
    live = serve()
    for given in ("a" * 129, "id X-Injected: 1", 'quoted"id', "ok-id"):
        echoed = httpx2.get(f"{live.url}/healthz", headers={"X-Request-ID": given})
        kept = echoed.headers["x-request-id"]
        assert (kept == given) == (given == "ok-id")
        assert len(kept) <= 128 and kept.isascii()
