"""Building real /v2/job requests and reading multipart answers."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx2
from PIL import Image
from requests_toolbelt.multipart.decoder import MultipartDecoder

DEV = "inference.flux-fast.dev-kontext.img2img.v1"
PRO_IMG = "inference.flux-kontext.pro.img2img.v2"
PRO_TXT = "inference.flux-kontext.pro.txt2img.v2"
MAX_IMG = "inference.flux-kontext.max.img2img.v2"
MAX_TXT = "inference.flux-kontext.max.txt2img.v2"


def job_part(config: dict[str, Any], job_type: str = DEV) -> tuple:
    """The `job` part as the official client sends it."""
    body = json.dumps({"type": job_type, "config": config}).encode()
    return ("job", ("job.json", body, "application/json"))


def input_part(data: bytes, name: str = "image.png", mime: str = "image/png") -> tuple:
    """One `input` part."""
    return ("input", (name, data, mime))


def post_job(url: str, config: dict[str, Any], image: bytes | None, accept: str | None = None,
             job_type: str = DEV, token: str | None = None, params: dict | None = None,
             timeout: float = 60) -> httpx2.Response:
    """POST a job as multipart (inputs first, like the JS client) or as JSON without image."""
    headers = {"Accept": accept} if accept else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if image is None:
        return httpx2.post(f"{url}/v2/job", json={"type": job_type, "config": config},
                          headers=headers, params=params, timeout=timeout)
    files = [input_part(image), job_part(config, job_type)]
    return httpx2.post(f"{url}/v2/job", files=files, headers=headers, params=params,
                      timeout=timeout)


def post_images(url: str, config: dict[str, Any], images: list[bytes],
                accept: str | None = None, job_type: str = DEV, twice: bool = False,
                path: str = "/v2/job", token: str | None = None) -> httpx2.Response:
    """POST a job with one `input` part per image, in order, before the `job` part; `twice`
    sends each part twice, as the official JS client sends a File."""
    headers = {"Accept": accept} if accept else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    parts = [input_part(data, f"image{i}.png") for i, data in enumerate(images)
             for _ in range(2 if twice else 1)]
    return httpx2.post(f"{url}{path}", files=[*parts, job_part(config, job_type)],
                      headers=headers, timeout=60)


def multipart_parts(reply: httpx2.Response) -> dict[str, tuple[dict[str, str], bytes]]:
    """{part name: (headers, body)} of a multipart answer."""
    decoder = MultipartDecoder(reply.content, reply.headers["content-type"])
    parts = {}
    for part in decoder.parts:
        headers = {k.decode().lower(): v.decode() for k, v in part.headers.items()}
        name = headers["content-disposition"].split('name="')[1].split('"')[0]
        parts[name] = (headers, part.content)
    return parts


def job_of(reply: httpx2.Response) -> dict[str, Any]:
    """The job JSON of an answer, multipart or JSON."""
    if reply.headers["content-type"].startswith("multipart/form-data"):
        return json.loads(multipart_parts(reply)["job"][1])
    return reply.json()


def image_of(data: bytes) -> Image.Image:
    """Decode image bytes."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
