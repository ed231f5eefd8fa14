"""Accept negotiation, including the official clients' `multipart/form-data; image/png`."""

import pytest

from server.api.accept import ResponseFormat, negotiate
from server.errors import NotAcceptable


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, ResponseFormat("raw", "jpeg")),
        ("", ResponseFormat("raw", "jpeg")),
        ("*/*", ResponseFormat("raw", "jpeg")),
        ("image/jpeg", ResponseFormat("raw", "jpeg")),
        ("image/png", ResponseFormat("raw", "png")),
        ("image/webp", ResponseFormat("raw", "webp")),
        ("multipart/form-data", ResponseFormat("multipart", "jpeg")),
        ("multipart/form-data; image/png", ResponseFormat("multipart", "png")),
        ("multipart/form-data; image/webp", ResponseFormat("multipart", "webp")),
        ("multipart/form-data; image/jpeg", ResponseFormat("multipart", "jpeg")),
        ("multipart/form-data; image/png; quality=90", ResponseFormat("multipart", "png")),
        ("multipart/form-data;image/webp", ResponseFormat("multipart", "webp")),
        ("application/json", ResponseFormat("json")),
        ("image/png; q=0.5, image/webp", ResponseFormat("raw", "webp")),
        ("text/html, */*;q=0.8", ResponseFormat("raw", "jpeg")),
        ("image/png; quality=90", ResponseFormat("raw", "png")),
        ("IMAGE/PNG", ResponseFormat("raw", "png")),
    ],
)
def test_negotiate(accept, expected):
    assert negotiate(accept) == expected


def test_only_unproducible_types_is_406_naming_accept():
    with pytest.raises(NotAcceptable, match="Accept: none of 'text/html'") as caught:
        negotiate("text/html")
    assert caught.value.status == 406


def test_huge_accept_header_is_refused_clearly():
    with pytest.raises(NotAcceptable, match="longer than 4096"):
        negotiate("image/png, " * 1000)


def test_multipart_allows_multipart_errors_only_for_multipart():
    assert negotiate("multipart/form-data; image/png").allows_multipart
    assert not negotiate("image/png").allows_multipart
