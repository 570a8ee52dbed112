"""``{"images": [...]}`` bodies of ``/classify_array`` read without building Python lists.

Why: one 28 x 28 x 1 image as JSON is 813 nested lists. ``json.loads`` builds them and
``np.asarray`` walks them again: ~150 us in isolation, and under 32 single-image clients on
2 cores the largest item on the worker's event loop (py-spy ``--gil``: ``np.asarray`` 17 % and
``json.loads`` 11 % of the samples holding the GIL, more than the model's own Python). Here the
body stays bytes: ``bytes.translate`` splits it into its numbers (``1,2,3``, parsed by
``np.fromstring`` in C) and its skeleton (``[[,],[,]]``), numbers may sit only inside the
innermost lists, and the skeleton must equal the one an array of an image shape the model takes
has (``[N, H, W, C]``, ``[H, W, C]``, and for one
channel ``[N, H, W]``, ``[H, W]``): one comparison of bytes checks that the lists are
rectangular and nested as that shape's are.

Only that plain form is read here: non-negative integers, brackets and commas (a space after a
comma, as ``json.dumps`` writes it, is allowed), in an object whose one key is ``"images"``.
Anything else — floats, signs, other whitespace, ``null``, other keys, ragged, empty or
differently shaped lists, leading zeros, broken JSON — returns ``None`` and the caller takes the
``json.loads`` way, whose checks name what is wrong. What is read here equals
``np.asarray(json.loads(body)["images"])`` (the unit tests hold the two to it).
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

# `{"images":` before the array and `}` after it, with the whitespace JSON allows there
_PREFIX = re.compile(rb'[ \t\r\n]*\{[ \t\r\n]*"images"[ \t\r\n]*:[ \t\r\n]*')
_SUFFIX = re.compile(rb"[ \t\r\n]*\}[ \t\r\n]*")
_DIGITS = b"0123456789"
_MARK_DIGITS = bytes.maketrans(_DIGITS, b"d" * 10)
_MAX_VALUE = 999_999  # beyond any pixel: such bodies go the json way (and its range error)
_POWERS = (10, 100, 1_000, 10_000, 100_000)  # a value's digit count is 1 + how many it reaches


def parse_json_images(body: bytes, image_shape: tuple[int, int, int]) -> np.ndarray | None:
    """The ``images`` array (``int64``) of a plain body, or ``None`` for the json path.

    Args:
        body: the request body.
        image_shape: the model's ``(H, W, C)``; other shapes are left to the json path.
    """
    start, end = body.find(b"["), body.rfind(b"]")
    if start < 0 or end < start:
        return None
    if not (_PREFIX.fullmatch(body, 0, start) and _SUFFIX.fullmatch(body, end + 1)):
        return None
    text = body[start : end + 1].replace(b", ", b",")
    if text.translate(None, _DIGITS + b"[],"):
        return None  # a character a plain array of whole numbers does not have
    marked = text.translate(_MARK_DIGITS)
    if b"d[" in marked or b"]d" in marked:
        return None  # a number against a bracket's outside: "1[2]", "[2]1"
    numbers = text.translate(None, b"[]")  # "1,2,3"
    if not numbers or numbers.startswith(b",") or numbers.endswith(b",") or b",," in numbers:
        return None  # an empty list or field
    count = numbers.count(b",") + 1
    skeleton = text.translate(None, _DIGITS)
    for shape in _shapes(count, image_shape):
        if skeleton == _skeleton(shape):
            break
    else:
        return None  # not rectangular, or not a shape the model takes
    values = np.fromstring(numbers, dtype=np.int64, sep=",")
    if len(values) != count or values.max() > _MAX_VALUE:
        return None
    # JSON numbers have no leading zeros: the digits sent must be the values' own
    digits = count + sum(int(np.count_nonzero(values >= p)) for p in _POWERS)
    if len(numbers) - (count - 1) != digits:
        return None
    return values.reshape(shape)


def _shapes(count: int, image_shape: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """The array shapes holding ``count`` numbers that the model's image check accepts."""
    h, w, c = image_shape
    shapes: list[tuple[int, ...]] = []
    if count % (h * w * c) == 0:
        shapes.append((count // (h * w * c), h, w, c))
        if count == h * w * c:
            shapes.append((h, w, c))
    if c == 1 and count % (h * w) == 0:
        shapes.append((count // (h * w), h, w))
        if count == h * w:
            shapes.append((h, w))
    return shapes


@lru_cache(maxsize=512)
def _skeleton(shape: tuple[int, ...]) -> bytes:
    """A ``shape`` array as compact JSON with the digits removed: ``(2, 2)`` -> ``[[,],[,]]``."""
    inner = b""
    for size in reversed(shape):
        inner = b"[" + b",".join([inner] * size) + b"]"
    return inner
