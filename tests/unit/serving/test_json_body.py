"""The list-free JSON reader of /classify_array: the json module's array or nothing."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from serving.json_body import parse_json_images

SHAPE = (28, 28, 1)


def _json_array(body: bytes) -> np.ndarray | None:
    """What the json path makes of a body: the array, or None where it refuses it."""
    try:
        payload = json.loads(body)
        if not isinstance(payload, dict) or set(payload) != {"images"}:
            return None
        return np.asarray(payload["images"])
    except (ValueError, TypeError):
        return None


@pytest.mark.parametrize(
    "shape", [(1, 28, 28, 1), (3, 28, 28, 1), (28, 28, 1), (2, 28, 28), (28, 28)]
)
@pytest.mark.parametrize("separators", [None, (",", ":"), (", ", ": ")])
def test_plain_bodies_read_as_the_json_module_reads_them(shape, separators) -> None:  # noqa: ANN001
    values = np.random.default_rng(0).integers(0, 256, shape)
    values.flat[:3] = [0, 255, 10]
    body = json.dumps({"images": values.tolist()}, separators=separators).encode()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # np.fromstring's text mode, not its deprecated binary one
        array = parse_json_images(body, SHAPE)
    expected = _json_array(body)
    assert array is not None and array.dtype == expected.dtype and array.shape == expected.shape
    np.testing.assert_array_equal(array, expected)


def test_values_outside_a_pixel_are_read_for_the_range_check_to_refuse() -> None:
    body = json.dumps({"images": np.full((28, 28), 1000).tolist()}).encode()
    np.testing.assert_array_equal(parse_json_images(body, SHAPE), np.full((28, 28), 1000))


@pytest.mark.parametrize(
    "body",
    [
        b'{"images": [[1, 2]]}',  # a shape the model does not take: the json path says so
        b'{"images": []}',
        b'{"images": [[]]}',
        b'{"images": [1.5]}',
        b'{"images": [-1]}',
        b'{"images": [01]}',
        b'{"images": [1 2]}',
        b'{"images": [1,,2]}',
        b'{"images": [null]}',
        b'{"image": [1]}',
        b'{"images": [1], "top_k": 3}',
        b'{"images": [1]',
        b'{"images": [1]} x',
        b"[1, 2]",
        b"",
        b"not json",
    ],
)
def test_anything_not_plain_is_left_to_the_json_path(body: bytes) -> None:
    assert parse_json_images(body, SHAPE) is None


def test_an_indented_or_ragged_body_is_left_to_the_json_path() -> None:
    image = np.random.default_rng(1).integers(0, 256, (28, 28)).tolist()
    assert parse_json_images(json.dumps({"images": [image]}, indent=1).encode(), SHAPE) is None
    ragged = [row[:] for row in image]
    ragged[5] = ragged[5][:-1]
    ragged[6] = [*ragged[6], 7]  # the same count of numbers, not rectangular
    assert parse_json_images(json.dumps({"images": [ragged]}).encode(), SHAPE) is None


def test_a_damaged_body_reads_as_the_json_module_reads_it_or_not_at_all() -> None:
    rng = np.random.default_rng(2)
    body = json.dumps({"images": rng.integers(0, 256, (1, 28, 28, 1)).tolist()}).encode()
    alphabet = b"0123456789[], .-e"
    read = 0
    for _ in range(400):
        damaged = bytearray(body)
        at = int(rng.integers(len(damaged)))
        match int(rng.integers(3)):
            case 0:
                del damaged[at]
            case 1:
                damaged.insert(at, alphabet[int(rng.integers(len(alphabet)))])
            case _:
                damaged[at] = alphabet[int(rng.integers(len(alphabet)))]
        array = parse_json_images(bytes(damaged), SHAPE)
        if array is not None:
            read += 1
            expected = _json_array(bytes(damaged))
            assert expected is not None and expected.shape == array.shape
            np.testing.assert_array_equal(array, expected)
    assert read > 50  # digit-for-digit changes still read: the check above is exercised
