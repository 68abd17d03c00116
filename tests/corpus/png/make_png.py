"""Writes the tiny PNG fixtures of tests/picture.rs with the standard library only (zlib, struct),
so the decoder is checked against pixels chosen here, not against its own output."""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(w, h, ctype, depth, rows, plte=None):
    raw = b''.join(b'\x00' + r for r in rows)  # filter type 0 on every row
    out = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, depth, ctype, 0, 0, 0))
    if plte:
        out += chunk(b'PLTE', plte)
    return out + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')


def write(name, data):
    with open(os.path.join(HERE, name), 'wb') as f:
        f.write(data)


# 3×2 RGB, 8 bit: pixel (x, y) = (10x + y, 100 + x, 200 − y).
write('rgb_3x2.png', png(3, 2, 2, 8, [bytes(v for x in range(3) for v in (10 * x + y, 100 + x, 200 - y)) for y in range(2)]))
# 2×2 grey + alpha, 8 bit: grey = 60x + 120y, alpha = 255 − 50x.
write('ga_2x2.png', png(2, 2, 4, 8, [bytes(v for x in range(2) for v in (60 * x + 120 * y, 255 - 50 * x)) for y in range(2)]))
# 4×1 palette, 2 bit: indices 0, 1, 2, 3 → black, red, green, blue.
write('pal2_4x1.png', png(4, 1, 3, 2, [bytes([0b00011011])], bytes([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])))
# Hostile: the header claims 100000 × 100000 pixels, the data holds one empty row.
write('huge_dims.png', png(100000, 100000, 2, 8, [b'']))
