"""Smoke test of the test harness itself: a fake-engine server answers a JSON job."""

import io

import httpx2
from helpers.http import DEV
from helpers.images import image_bytes
from PIL import Image


def test_fake_engine_server_edits(serve):
    live = serve()
    files = [("input", ("in.png", image_bytes(), "image/png")),
             ("job", ("job.json", f'{{"type":"{DEV}","config":{{"prompt":"make it red",'
                                  '"width":512,"height":576}}', "application/json"))]
    reply = httpx2.post(f"{live.v2}/job", files=files, headers={"Accept": "image/png"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(reply.content)).size == (512, 576)
