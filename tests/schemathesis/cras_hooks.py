"""Schemathesis hooks for `cras serve` (loaded through SCHEMATHESIS_HOOKS=cras_hooks by
tests/serve/serve_schemathesis.rs).

The OpenAPI document can say that `POST /v1/predict` takes image bytes (a raw `image/png`,
`image/jpeg`, `image/bmp`, `image/tiff` or `application/octet-stream` body, or `multipart/form-data`
parts of `format: binary`) but not that they must decode as an image of that format. Random
bytes are answered 400, which Schemathesis would rightly count against the document if it
believed them valid; so every generated image body here is a real file of its media type (a few
sizes, RGB and gray), written with the standard library only, except the JPEG, a fixture of the
repository.
"""

import struct
import zlib
from pathlib import Path

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


def bmp(width, height, seed):
    """An uncompressed 24-bit BMP."""
    stride = (width * 3 + 3) // 4 * 4
    rows = bytearray()
    for y in reversed(range(height)):
        row = bytearray()
        for x in range(width):
            row += bytes([(x * 13 + seed) % 256, (y * 7) % 256, (x + y) % 256])  # B, G, R
        rows += row + b"\0" * (stride - len(row))
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    header = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(rows), 0, 0, 14 + len(info))
    return header + info + bytes(rows)


def tiff(width, height, seed):
    """An uncompressed baseline RGB TIFF (little-endian, one strip)."""
    pixels = bytes((x * 11 + y * 3 + c * 29 + seed) % 256 for y in range(height) for x in range(width) for c in range(3))
    entries = 10
    ifd_offset = 8
    ifd_size = 2 + entries * 12 + 4
    bits_offset = ifd_offset + ifd_size
    data_offset = bits_offset + 6
    short, long_ = 3, 4
    tags = [
        (256, long_, 1, width),
        (257, long_, 1, height),
        (258, short, 3, bits_offset),
        (259, short, 1, 1),
        (262, short, 1, 2),
        (273, long_, 1, data_offset),
        (277, short, 1, 3),
        (278, long_, 1, height),
        (279, long_, 1, len(pixels)),
        (284, short, 1, 1),
    ]
    ifd = struct.pack("<H", entries)
    for tag, kind, count, value in tags:
        if kind == short and count == 1:
            ifd += struct.pack("<HHIHH", tag, kind, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", ifd_offset) + ifd + struct.pack("<HHH", 8, 8, 8) + pixels


JPEG = (Path(__file__).resolve().parent.parent / "fixtures" / "preprocess" / "jpeg_48x38.jpg").read_bytes()
PNGS = [png(32, 32, 3, 0), png(64, 48, 3, 1), png(17, 23, 1, 2), png(1, 1, 3, 3)]
FILES = {
    "image/png": PNGS,
    "image/jpeg": [JPEG],
    "image/bmp": [bmp(32, 32, 0), bmp(7, 5, 1)],
    "image/tiff": [tiff(32, 32, 0), tiff(9, 4, 1)],
}
EVERY = [f for files in FILES.values() for f in files]

# Raw bodies: each image type with files of its format, application/octet-stream with any.
for media_type, files in FILES.items():
    schemathesis.openapi.media_type(media_type, st.sampled_from(files))
schemathesis.openapi.media_type("application/octet-stream", st.sampled_from(EVERY))
# Multipart parts (`type: string, format: binary`).
schemathesis.openapi.format("binary", st.sampled_from(EVERY).map(Binary))
