"""Generates the image fixtures of Tests/DCNDataTests (ImageTests, TransformTests).

Run from anywhere:  python3 Tests/Fixtures/images/make_fixtures.py   (needs Pillow, numpy, piexif)

Every "<name>.ref.png" is Pillow's decode of "<name>" after detectron2's
`_apply_exif_orientation` and `convert("RGB")` (the reference our decoder must match), except
where noted. Deterministic: fixed seed, no timestamps.
"""
import io
import os

import numpy as np
import piexif
from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(1234)


def path(name):
    return os.path.join(HERE, name)


def pattern(w, h, noise=8):
    """A smooth colour pattern with a few sharp shapes, so orientation errors are visible."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(1, w - 1)
    g = 255 * y / max(1, h - 1)
    b = 128 + 100 * np.sin(x / 3.0) * np.cos(y / 4.0)
    img = np.stack([r, g, b], axis=-1)
    img[2:6, 2:9] = [250, 20, 20]          # a red block near the top-left corner
    img[h - 5:h - 2, w - 7:w - 2] = [20, 20, 250]  # a blue block near the bottom-right corner
    img += rng.normal(0, noise, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


# detectron2 _apply_exif_orientation: orientation -> PIL transpose method.
METHOD = {2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM,
          5: Image.TRANSPOSE, 6: Image.ROTATE_270, 7: Image.TRANSVERSE, 8: Image.ROTATE_90}
INVERSE = {2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM,
           5: Image.TRANSPOSE, 6: Image.ROTATE_90, 7: Image.TRANSVERSE, 8: Image.ROTATE_270}


def detectron2_read(fp):
    im = Image.open(fp)
    orientation = im.getexif().get(0x0112)
    method = METHOD.get(orientation)
    if method is not None:
        im = im.transpose(method)
    return im.convert("RGB")


def save_ref(name):
    detectron2_read(path(name)).save(path(name + ".ref.png"))


# --- EXIF orientation: stored pixels are the inverse transform of the upright image. --------
upright = pattern(37, 23, noise=0)
upright.save(path("upright.png"))
for o in range(1, 9):
    stored = upright if o == 1 else upright.transpose(INVERSE[o])
    exif = Image.Exif()
    exif[0x0112] = o
    exif[0x010F] = "dcn-test"  # Make: so orientation is not the only IFD0 entry
    stored.save(path(f"exif_{o}.jpg"), quality=97, exif=exif.tobytes())
    save_ref(f"exif_{o}.jpg")
# Big-endian ("MM") EXIF written by piexif, orientation 6.
exif_mm = piexif.dump({"0th": {piexif.ImageIFD.Make: b"dcn", piexif.ImageIFD.Orientation: 6}})
assert exif_mm[6:8] == b"MM", exif_mm[:8]
upright.transpose(INVERSE[6]).save(path("exif_6_mm.jpg"), quality=97, exif=exif_mm)
save_ref("exif_6_mm.jpg")
# EXIF orientation in a PNG eXIf chunk.
exif = Image.Exif()
exif[0x0112] = 8
upright.transpose(INVERSE[8]).save(path("exif_8.png"), exif=exif.tobytes())
save_ref("exif_8.png")

# --- JPEG colour spaces. ----------------------------------------------------------------------
photo = pattern(45, 31)
photo.convert("L").save(path("gray.jpg"), quality=90)
save_ref("gray.jpg")
photo.convert("CMYK").save(path("cmyk.jpg"), quality=90)  # Pillow writes Adobe inverted CMYK
save_ref("cmyk.jpg")
photo.save(path("progressive.jpg"), quality=85, progressive=True)
save_ref("progressive.jpg")
photo.save(path("rgb.jpg"), quality=85)
save_ref("rgb.jpg")

# --- PNG variants. ----------------------------------------------------------------------------
pal = photo.quantize(colors=16)
pal.info["transparency"] = 3
pal.save(path("palette.png"), transparency=3)
save_ref("palette.png")
photo.convert("L").save(path("gray.png"))
save_ref("gray.png")
photo.convert("1").save(path("gray1bit.png"))
save_ref("gray1bit.png")
la = photo.convert("LA")
la.putalpha(Image.fromarray(rng.integers(0, 256, (31, 45), dtype=np.uint8)))
la.save(path("gray_alpha.png"))
save_ref("gray_alpha.png")
rgba = photo.convert("RGBA")
rgba.putalpha(Image.fromarray(rng.integers(0, 256, (31, 45), dtype=np.uint8)))
rgba.save(path("rgba.png"))
save_ref("rgba.png")
# 16-bit RGB: written by hand (Pillow has no 16-bit RGB mode). Reference = high bytes, which is
# what Pillow's "RGB;16B" unpacker keeps.
import struct
import zlib


def write_png(fname, width, height, bit_depth, color_type, raw_rows, interlace=0):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    body = b"".join(b"\x00" + r for r in raw_rows)
    with open(path(fname), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(body, 9)) + chunk(b"IEND", b""))


h, w = 19, 27
rgb16 = rng.integers(0, 65536, (h, w, 3), dtype=np.uint16)
write_png("rgb16.png", w, h, 16, 2, [rgb16[y].astype(">u2").tobytes() for y in range(h)])
Image.fromarray((rgb16 >> 8).astype(np.uint8), "RGB").save(path("rgb16.png.ref.png"))
assert np.array_equal(np.array(detectron2_read(path("rgb16.png"))), (rgb16 >> 8).astype(np.uint8))
# 16-bit gray: Pillow opens it as "I;16" and convert("RGB") clips every value above 255 to 255;
# we keep the high byte as for every other 16-bit PNG (reference made by hand).
gray16 = rng.integers(0, 65536, (h, w), dtype=np.uint16)
write_png("gray16.png", w, h, 16, 0, [gray16[y].astype(">u2").tobytes() for y in range(h)])
Image.fromarray((gray16 >> 8).astype(np.uint8), "L").convert("RGB").save(path("gray16.png.ref.png"))
# 16-bit RGBA: Pillow keeps the high byte ("RGBA;16B").
rgba16 = rng.integers(0, 65536, (h, w, 4), dtype=np.uint16)
write_png("rgba16.png", w, h, 16, 6, [rgba16[y].astype(">u2").tobytes() for y in range(h)])
save_ref("rgba16.png")

# Adam7-interlaced 8-bit RGB, written by hand (Pillow cannot write interlaced PNGs).
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
inter = np.array(photo)
ih, iw = inter.shape[:2]
passes = []
for (x0, y0, dx, dy) in ADAM7:
    sub = inter[y0::dy, x0::dx]
    if sub.size:
        passes += [sub[y].tobytes() for y in range(sub.shape[0])]
write_png("interlaced.png", iw, ih, 8, 2, passes, interlace=1)
save_ref("interlaced.png")
assert np.array_equal(np.array(Image.open(path("interlaced.png")).convert("RGB")), inter)

# --- Resize references: Pillow's BILINEAR resize, what detectron2's ResizeTransform uses. ----
src = pattern(97, 61, noise=30)
src.save(path("resize_src.png"))
for (rw, rh) in [(41, 26), (150, 94), (97, 30), (200, 61), (13, 9)]:
    src.resize((rw, rh), Image.BILINEAR).save(path(f"resize_src_{rw}x{rh}.ref.png"))

total = sum(os.path.getsize(path(f)) for f in os.listdir(HERE))
print(f"{len(os.listdir(HERE))} files, {total} bytes")
