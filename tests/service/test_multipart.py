"""Whole multipart bodies: the same parts as Starlette's form parser finds, and the service's limits and errors."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.errors import BadRequest, PayloadTooLarge
from service.multipart import parse_form

BOUNDARY = "axon-test-boundary"
CTYPE = f"multipart/form-data; boundary={BOUNDARY}"
FIELD_BYTES = 1000


def parse(body: bytes, content_type: str, *, files: int, fields: int, files_are: str = "files"):
    """`parse_form` with the text-field size these tests use."""
    return parse_form(
        body, content_type, max_files=files, max_fields=fields, max_field_bytes=FIELD_BYTES, files_are=files_are
    )


def encoded(files=None, data=None) -> tuple[bytes, str]:
    """A body and content type as httpx, an independent client, writes them."""
    request = httpx.Request("POST", "http://x/", files=files, data=data)
    return request.read(), request.headers["content-type"]


def starlette_parts(body: bytes, content_type: str) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """What Starlette's `Request.form()` finds in the same body: the reference this module must agree with."""

    async def parts():
        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {"type": "http", "method": "POST", "headers": [(b"content-type", content_type.encode())]}
        form = await Request(scope, receive).form()
        files, fields = [], {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((key, await value.read()))
            else:
                fields[key] = value
        await form.close()
        return files, fields

    return asyncio.run(parts())


ONE_FILE = [("images", ("a.png", b"1", "image/png"))]  # httpx writes a form without files urlencoded
PNGISH = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"\r\n--not-the-boundary\r\n\r\n"


@pytest.mark.parametrize(
    "files, data",
    [
        ([("images", ("a.png", PNGISH, "image/png"))], None),
        ([("images", ("a.png", PNGISH, "image/png")), ("images", ("b.png", b"second", "image/png"))], None),
        ([("images", ("a.png", b"", "image/png"))], {"model": "mnist-cnn", "top_k": "3"}),
        ([("other", ("x.bin", b"\r\n\r\n", "application/octet-stream"))], {"target": "sept", "note": "é ü"}),
        (ONE_FILE, {"top_k": ["1", "2"]}),  # a repeated field: the last one wins, as in Starlette's form
    ],
)
def test_parts_are_the_ones_starlette_finds(files, data):
    body, content_type = encoded(files, data)
    form = parse(body, content_type, files=8, fields=8)
    assert (form.files, form.fields) == starlette_parts(body, content_type)
    assert form.files[0][1] == files[0][1][1]  # and the bytes are the file's own


def test_a_quoted_boundary_and_a_single_read_of_several_parts():
    body = (
        b'--b\r\nContent-Disposition: form-data; name="images"; filename="a"\r\n\r\nAAA\r\n'
        b'--b\r\nContent-Disposition: form-data; name="top_k"\r\n\r\n2\r\n--b--\r\n'
    )
    form = parse(body, 'multipart/form-data; boundary="b"', files=1, fields=1)
    assert form.files == [("images", b"AAA")]
    assert form.fields == {"top_k": "2"}


def test_file_and_field_counts_are_bounded():
    body, content_type = encoded([("images", ("a.png", b"1", "image/png"))] * 3)
    with pytest.raises(PayloadTooLarge, match="more than 2 images in one request"):
        parse(body, content_type, files=2, fields=8, files_are="images")
    assert len(parse(body, content_type, files=3, fields=8).files) == 3
    body, content_type = encoded(ONE_FILE, data={"a": "1", "b": "2", "c": "3"})
    with pytest.raises(PayloadTooLarge, match="more than 2 text fields"):
        parse(body, content_type, files=2, fields=2)


def test_a_text_field_is_bounded_but_a_file_is_not():
    body, content_type = encoded(ONE_FILE, data={"model": "x" * (FIELD_BYTES + 1)})
    with pytest.raises(PayloadTooLarge, match="'model' is over 1000 bytes"):
        parse(body, content_type, files=1, fields=1)
    body, content_type = encoded(ONE_FILE, data={"model": "x" * FIELD_BYTES})
    assert len(parse(body, content_type, files=1, fields=1).fields["model"]) == FIELD_BYTES
    big = b"y" * (FIELD_BYTES * 2)
    body, content_type = encoded([("images", ("a.png", big, "image/png"))])
    assert parse(body, content_type, files=1, fields=1).files == [("images", big)]


@pytest.mark.parametrize(
    "body, content_type, message",
    [
        (b"--b\r\n", "multipart/form-data", "no boundary"),
        (  # cut off before the closing boundary: a part is missing, not silently dropped
            b'--b\r\nContent-Disposition: form-data; name="images"; filename="a"\r\n\r\nAAA',
            "multipart/form-data; boundary=b",
            "ends before its closing boundary",
        ),
        (b"", "multipart/form-data; boundary=b", "ends before its closing boundary"),
        (b"--c\r\nnot a part", "multipart/form-data; boundary=b", "malformed"),
        (b"--b\r\nContent-Type: text/plain\r\n\r\nAAA\r\n--b--\r\n", "multipart/form-data; boundary=b", '"name"'),
    ],
)
def test_broken_bodies_are_bad_requests(body, content_type, message):
    with pytest.raises(BadRequest, match=message):
        parse(body, content_type, files=4, fields=4)
