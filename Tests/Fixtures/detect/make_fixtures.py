"""Generates the image fixtures of Tests/DCNDataTests/DetectImageTests.swift.

Run from anywhere:  python3 Tests/Fixtures/detect/make_fixtures.py   (needs Pillow)

cmyk_quadrants.jpg: a 32x32 CMYK JPEG (Pillow writes Adobe's inverted CMYK, with the Adobe APP14
marker) of four flat 16x16 quadrants whose RGB is known from the CMYK values: cyan (255, 0, 0, 0)
-> (0, 255, 255), magenta (0, 255, 0, 0) -> (255, 0, 255), yellow (0, 0, 255, 0) -> (255, 255, 0),
and a 50 % black (0, 0, 0, 128) -> (127, 127, 127). Deterministic (no timestamps).
"""
import os

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))

QUADRANTS = [((255, 0, 0, 0), (0, 0)), ((0, 255, 0, 0), (16, 0)), ((0, 0, 255, 0), (0, 16)), ((0, 0, 0, 128), (16, 16))]

image = Image.new("CMYK", (32, 32))
for cmyk, (x, y) in QUADRANTS:
    image.paste(cmyk, (x, y, x + 16, y + 16))
image.save(os.path.join(HERE, "cmyk_quadrants.jpg"), quality=100)
# What Pillow itself decodes (for the record; the test checks the values above).
back = Image.open(os.path.join(HERE, "cmyk_quadrants.jpg")).convert("RGB")
print([back.getpixel((x + 8, y + 8)) for _, (x, y) in QUADRANTS])
