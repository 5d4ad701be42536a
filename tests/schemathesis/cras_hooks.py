"""Schemathesis hooks for `cras serve` (loaded through SCHEMATHESIS_HOOKS=cras_hooks by
tests/serve/serve_schemathesis.rs).

The OpenAPI document can say that `POST /v1/predict` takes image bytes (raw `image/*` or
`application/octet-stream`, or `multipart/form-data` parts of `format: binary`) but not that
they must decode as an image. Random bytes are answered 400, which Schemathesis would rightly
count against the document if it believed them valid; so every generated image body here is a
real PNG (RGB or grayscale, a few sizes), written with the standard library only.
"""

import struct
import zlib

import schemathesis
from hypothesis import strategies as st
from schemathesis.transport.serialization import Binary


def png(width, height, channels, seed):
    """A PNG of `width` x `height` pixels, 8 bits per channel (1: gray, 3: RGB)."""
    color_type = {1: 0, 3: 2}[channels]
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            for c in range(channels):
                rows.append((x * 37 + y * 101 + c * 53 + seed * 17) % 256)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows)))
        + chunk(b"IEND", b"")
    )


PNGS = [png(32, 32, 3, 0), png(64, 48, 3, 1), png(17, 23, 1, 2), png(1, 1, 3, 3)]

# Raw bodies: `image/*` (resolved to image/png) and application/octet-stream.
schemathesis.openapi.media_type("image/png", st.sampled_from(PNGS))
schemathesis.openapi.media_type("application/octet-stream", st.sampled_from(PNGS))
# Multipart parts (`type: string, format: binary`).
schemathesis.openapi.format("binary", st.sampled_from(PNGS).map(Binary))
