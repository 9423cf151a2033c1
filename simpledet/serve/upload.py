"""A detect request's image: the body read within the size limit, then decoded as `predict` reads
an image file. Every way a request can be wrong is a RequestError: a 4xx status and a message
naming what was wrong, which the service answers as JSON {"error": ...}."""

import io

from PIL import Image, UnidentifiedImageError
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from torch import Tensor

from simpledet.data.image_io import pil_to_tensor

# Larger than any camera's photo (48 MP); caps the memory one request can take once decoded
# (12 bytes a pixel as a float tensor), which a small, highly compressed file could otherwise blow up.
MAX_PIXELS = 50_000_000


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def too_large(size: int, max_bytes: int, how: str) -> RequestError:
    return RequestError(413, f"the body ({how} {size} bytes) is over the limit of {max_bytes} bytes (--max-bytes)")


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """The image's bytes: the whole body, or the `file` part of a multipart form. The declared
    Content-Length is checked before anything is read, and the bytes are counted as they arrive
    (a chunked body declares none), so an oversized body is refused without being held in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(int(declared), max_bytes, "Content-Length:")

    async def limited():
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_bytes:
                    raise too_large(received, max_bytes, "at least")
                yield chunk
        except ClientDisconnect:
            raise RequestError(400, f"the client disconnected after sending {received} bytes") from None

    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        data = await _form_file(request, limited())
    else:  # the body is the image, whatever type it declares: the decoder knows the formats by their bytes
        data = b"".join([chunk async for chunk in limited()])
    if not data:
        raise RequestError(400, "the body is empty: send the image's bytes as the body, or as the `file` "
                                "field of a multipart form")
    return data


async def _form_file(request: Request, stream) -> bytes:
    parser = MultiPartParser(request.headers, stream, max_files=1, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise RequestError(400, f"the multipart body cannot be parsed: {e}") from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            fields = ", ".join(sorted(form.keys())) or "none"
            raise RequestError(400, f"the multipart form has no file field named `file` (its fields: {fields})")
        return await upload.read()
    finally:
        await form.close()


def decode_image(data: bytes) -> Tensor:
    """float32 CHW RGB in [0, 1], as simpledet.data.image_io.read_image gives for the same file."""
    head = data[:16]
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise RequestError(413, f"the image is {im.width}x{im.height} = {im.width * im.height} pixels, "
                                        f"over the limit of {MAX_PIXELS}")
            return pil_to_tensor(im)
    except UnidentifiedImageError:
        raise RequestError(400, f"the body ({len(data)} bytes, starting {head!r}) is not an image in a "
                                "format the service reads (JPEG, PNG, BMP, GIF, TIFF, WebP, ...)") from None
    except Image.DecompressionBombError as e:
        raise RequestError(413, f"the image is too large to decode: {e}") from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
        raise RequestError(400, f"the image ({len(data)} bytes) cannot be decoded: {e}") from None
