"""The one image contract: the library, the edge runtime, the SavedModel graph and the server
read the same shared set of generated images to the same pixels."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import sat_tf_edge.images as contract
from sat_tf.data.images import ImageLoadError, load_image
from sat_tf.export.saved_model import decode_image_bytes

SIZE = 24
RNG = np.random.default_rng(0)
# The stored pixels of each EXIF orientation are the upright image under this transform.
STORED = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: np.rot90(np.fliplr(a), 1),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: np.rot90(np.fliplr(a), -1),
    8: lambda a: np.rot90(a, -1),
}


def _encode(image: Image.Image, image_format: str, **options) -> bytes:
    output = io.BytesIO()
    image.save(output, format=image_format, **options)
    return output.getvalue()


def _smooth(height, width, channels=3):
    """A smooth colour pattern: compression and resizing change it only slightly."""
    y, x = np.mgrid[0:height, 0:width]
    planes = [127 + 120 * np.sin((x + 2 * c) / 5.0 + y / 7.0) for c in range(channels)]
    return np.stack(planes, axis=-1).clip(0, 255).astype(np.uint8)


def _upright_pattern():
    """An asymmetric image (a bright corner block), so every orientation is distinguishable."""
    pixels = np.zeros((30, 20, 3), np.uint8)
    pixels[:10, :5] = (250, 20, 20)
    pixels[20:, 10:] = (20, 20, 250)
    return pixels


def _with_orientation(pixels, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = np.ascontiguousarray(STORED[orientation](pixels))
    return _encode(Image.fromarray(stored), "PNG", exif=exif.tobytes())


def shared_images() -> dict[str, bytes]:
    """Grayscale, 16-bit, palette with and without transparency, RGBA, LA, CMYK, odd sizes."""
    rgb = _smooth(37, 23)
    alpha = np.tile(np.linspace(0, 255, 23, dtype=np.uint8), (37, 1))
    palette = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=32)
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    gray16 = (_smooth(41, 29, 1)[..., 0].astype(np.uint16) * 257 + RNG.integers(0, 257, (41, 29))).astype(np.uint16)
    return {
        "rgb.jpg": _encode(Image.fromarray(rgb), "JPEG", quality=95),
        "rgb.png": _encode(Image.fromarray(rgb), "PNG"),
        "gray.png": _encode(Image.fromarray(rgb[..., 0]), "PNG"),
        "gray.jpg": _encode(Image.fromarray(rgb[..., 1]), "JPEG", quality=95),
        "gray16.png": _encode(Image.fromarray(gray16), "PNG"),
        "palette.png": _encode(palette, "PNG"),
        "palette_transparent.png": _encode(transparent, "PNG", transparency=0),
        "rgba.png": _encode(Image.fromarray(np.dstack([rgb, alpha])), "PNG"),
        "la.png": _encode(Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA"), "PNG"),
        "cmyk.jpg": _encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95),
        "odd.bmp": _encode(Image.fromarray(_smooth(45, 31)), "BMP"),
        "tiny.bmp": _encode(Image.fromarray(_smooth(5, 3)), "BMP"),  # smaller than the input: upscaled
        **{f"exif{k}.png": _with_orientation(_upright_pattern(), k) for k in range(1, 9)},
    }


@pytest.fixture(scope="module")
def images():
    return shared_images()


def test_library_and_edge_runtime_give_identical_arrays(images, tmp_path):
    for name, data in images.items():
        path = tmp_path / name
        path.write_bytes(data)
        library = load_image(path, SIZE)
        edge = contract.load_image(str(path), SIZE)
        assert library.dtype == edge.dtype == np.uint8 and library.shape == (SIZE, SIZE, 3), name
        np.testing.assert_array_equal(library, edge, err_msg=name)
        np.testing.assert_array_equal(contract.load_image(data, SIZE), edge, err_msg=name)  # bytes or file


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_turned_upright(orientation):
    upright = _upright_pattern()
    np.testing.assert_array_equal(contract.decode_image(_with_orientation(upright, orientation)), upright)


def test_modes_follow_the_contract_by_value():
    gray16 = np.array([[0, 257, 32768, 65535]], np.uint16)
    decoded = contract.decode_image(_encode(Image.fromarray(gray16), "PNG"))
    assert decoded[0, :, 0].tolist() == [0, 1, 127, 255]  # x * 255 / 65535, not scaled by the maximum
    rgba = np.array([[[200, 100, 50, 0], [200, 100, 50, 255], [200, 100, 50, 128]]], np.uint8)
    decoded = contract.decode_image(_encode(Image.fromarray(rgba), "PNG"))
    assert decoded[0, 0].tolist() == [0, 0, 0] and decoded[0, 1].tolist() == [200, 100, 50]
    np.testing.assert_allclose(decoded[0, 2], [100, 50, 25], atol=1)  # over black: colour * alpha
    palette = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    palette.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    plain = contract.decode_image(_encode(palette, "PNG"))
    assert plain[0].tolist() == [[10, 20, 30], [40, 50, 60]]  # no transparency: straight to RGB
    holed = contract.decode_image(_encode(palette, "PNG", transparency=0))
    assert holed[0].tolist() == [[0, 0, 0], [40, 50, 60]]


def _graph_pixels(data: bytes) -> np.ndarray:
    return decode_image_bytes(tf.constant([data]), SIZE)[0].numpy()


def test_saved_model_graph_is_within_one_grey_level(images):
    """What a TF Serving client gets by sending upright JPEG/PNG/GIF/BMP bytes straight to the graph."""
    worst = {}
    for name, data in images.items():
        if name.startswith("exif") and name != "exif1.png" or name == "cmyk.jpg":
            continue  # the graph does not orient or convert CMYK; the server does (next test)
        difference = np.abs(_graph_pixels(data) - contract.load_image(data, SIZE).astype(np.float32))
        worst[name] = float(difference.max())
    # Upscaling a tiny image: TensorFlow's and Pillow's bilinear filters weight the border differently.
    assert worst.pop("tiny.bmp") <= 3.0
    assert max(worst.values()) <= 1.0, worst


def test_server_hands_the_graph_upright_bytes(images):
    for name, data in images.items():
        served = contract.graph_ready_bytes(data)
        if name in ("rgb.jpg", "rgb.png", "gray16.png", "exif1.png"):
            assert served == data  # upright and graph-readable: passed through untouched
        difference = np.abs(_graph_pixels(served) - contract.load_image(data, SIZE).astype(np.float32))
        assert difference.max() <= (3.0 if name == "tiny.bmp" else 1.0), (name, difference.max())


def test_bytes_prepared_at_the_model_size_decode_in_the_graph_to_the_contract_exactly(images):
    """What `sat-tf serve` hands its SavedModel: the graph's pixels are the library's, bit for bit."""
    for name, data in images.items():
        served = contract.graph_ready_bytes(data, size=SIZE)
        assert served.startswith(b"\x89PNG")
        np.testing.assert_array_equal(_graph_pixels(served), contract.load_image(data, SIZE).astype(np.float32), name)


def test_bad_images_name_the_source():
    with pytest.raises(contract.ImageDecodeError, match=r"<bytes>: not a readable image \(not an image file"):
        contract.decode_image(b"not an image")
    with pytest.raises(ImageLoadError, match="missing.png: not a readable image"):
        load_image("missing.png")


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels but that carries almost no data."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [10_000, 20_000])  # over Pillow's warning (89 MP) and error (179 MP) limits
def test_oversized_images_are_refused_quoting_the_contracts_limit_not_pillows(side):
    with pytest.raises(contract.ImageDecodeError, match=f"over the {contract.MAX_IMAGE_PIXELS:,}-pixel limit"):
        contract.decode_image(_png_declaring(side, side))
    with pytest.raises(contract.ImageDecodeError, match="10x20 pixels is over the 100-pixel limit"):
        contract.graph_ready_bytes(_png_declaring(10, 20), max_pixels=100)
    small = io.BytesIO()
    Image.new("RGB", (10, 10)).save(small, format="PNG")
    assert contract.graph_ready_bytes(small.getvalue(), max_pixels=100) == small.getvalue()  # at the limit


def test_a_declared_oversize_is_refused_from_the_first_bytes_alone():
    header = _png_declaring(10_000, 10_000)  # signature, IHDR and 64 bytes of data: no real pixels
    with pytest.raises(contract.ImageDecodeError, match="10000x10000 pixels is over the 1,000-pixel limit"):
        contract.refuse_declared_oversize(header, max_pixels=1_000)
    contract.refuse_declared_oversize(_png_declaring(10, 10), max_pixels=1_000)  # small: passes
    contract.refuse_declared_oversize(b"\xff\xd8\xff", max_pixels=1_000)  # a header cut short: left to the full check
    contract.refuse_declared_oversize(b"not an image", max_pixels=1_000)


def test_a_folder_an_empty_file_and_a_missing_file_each_get_their_own_message(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases = {
        tmp_path: "a folder, not an image file",
        tmp_path / "empty.jpg": "the file is empty",
        tmp_path / "missing.jpg": "file not found",
        b"": "no bytes",
    }
    for source, message in cases.items():
        with pytest.raises(contract.ImageDecodeError, match=message):
            contract.decode_image(source)
