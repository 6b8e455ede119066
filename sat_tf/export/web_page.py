"""`sat-tf export --web DIR`: a static folder that captions photos in the browser, on the device.

The folder holds the page of `sat-tf serve` (`sat_tf/serving/page/`: index.html, page.js, page.css)
with its in-browser backend (device.js: the edge runtime's decoding, image contract and confidence
in JavaScript), the TFLite pair with its manifest (`export_tflite`, the decoder step with a fixed
batch of the beam size: LiteRT.js cannot resize inputs) and a gzip copy of each model file (what
the page downloads and decompresses), and the LiteRT.js runtime (npm
`@litertjs/core`, pinned in `web/package.json`, installed by `npm ci --prefix web`): its ES modules
and the WebAssembly files it may load. Any static file server shows it (`python -m http.server`); the
photo is sent nowhere, and once loaded the page works offline.

Example:
    >>> export_web(model, "site", decoding=DecodingConfig().edge_settings())
    >>> # python -m http.server --directory site 8000, then open http://<this machine>:8000/
"""

from __future__ import annotations

import gzip
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Iterable

import numpy as np

from sat_tf.errors import ConfigError
from sat_tf.export.tflite import export_tflite
from sat_tf.models.captioner import Captioner
from sat_tf.utils.atomic import atomic_path
from sat_tf_edge.calibration import ConfidenceCalibration

PAGE_FILES = ("index.html", "page.js", "page.css", "device.js")
# The runtime's files: its two ES modules, and the WebAssembly builds loadLiteRt picks from without
# options (relaxed SIMD, or the compat build where the browser lacks it).
RUNTIME_FILES = {
    "@litertjs/core/dist/index.js": "litert/core/index.js",
    "@litertjs/wasm-utils/dist/index.js": "litert/wasm-utils/index.js",
    **{
        f"@litertjs/core/wasm/{name}": f"litert/wasm/{name}"
        for name in (
            "litert_wasm_internal.js",
            "litert_wasm_internal.wasm",
            "litert_wasm_compat_internal.js",
            "litert_wasm_compat_internal.wasm",
        )
    },
}
IMPORT_MAP = (
    '<script type="importmap">{"imports": {"@litertjs/core": "./litert/core/index.js", '
    '"@litertjs/wasm-utils": "./litert/wasm-utils/index.js"}}</script>\n'
    '  <script type="module" src="device.js"></script>\n'
)
PAGE_SCRIPT = '<script src="page.js"></script>'


def default_runtime_dir() -> Path:
    """`node_modules` of the repository's `web/` folder (`npm ci --prefix web`), or
    `$SAT_TF_LITERT_DIR`."""
    configured = os.environ.get("SAT_TF_LITERT_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "web" / "node_modules"


def _check_runtime(runtime_dir: Path) -> None:
    missing = [source for source in RUNTIME_FILES if not (runtime_dir / source).is_file()]
    if missing:
        raise ConfigError(
            f"{runtime_dir}: LiteRT.js is not installed there ({missing[0]} is missing): run "
            "`npm ci --prefix web` in the sat_tf repository (web/package.json pins @litertjs/core), "
            "or give --litert-dir (or $SAT_TF_LITERT_DIR) a node_modules folder holding @litertjs/core"
        )


def _web_index() -> str:
    """The served page's index.html with the runtime's import map and the in-browser backend."""
    html = (resources.files("sat_tf.serving") / "page" / "index.html").read_text(encoding="utf-8")
    if PAGE_SCRIPT not in html:
        raise RuntimeError("sat_tf/serving/page/index.html no longer loads page.js as the web export expects")
    return html.replace(PAGE_SCRIPT, IMPORT_MAP + "  " + PAGE_SCRIPT)


def _write_gzip_copy(path: Path) -> None:
    """`<file>.gz` beside the file: the page downloads it (about 14% smaller for an int8 pair) and
    decompresses it in the browser; `sat-tf-edge` reads the file itself."""
    with path.open("rb") as source, gzip.GzipFile(path.with_name(path.name + ".gz"), "wb", 9, mtime=0) as target:
        shutil.copyfileobj(source, target)


def export_web(
    model: Captioner,
    output_dir: str | os.PathLike,
    decoding: dict,
    calibration: ConfidenceCalibration | None = None,
    encoder_quantization: str = "dynamic",
    decoder_quantization: str = "dynamic",
    representative_images: Iterable[np.ndarray] | None = None,
    max_length: int = 20,
    runtime_dir: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Writes the static captioning page to `output_dir` (replaced atomically).

    Args:
        model: a trained `Captioner`.
        output_dir: the folder to write; an existing one is replaced once the new one is complete.
        decoding: the edge decoding settings (`DecodingConfig.edge_settings()`); the decoder step is
            exported with a fixed batch of their beam size.
        calibration: the model's confidence calibration (carried by the manifest).
        encoder_quantization, decoder_quantization: as `export_tflite` ("int8" needs
            `representative_images`); "dynamic" keeps the download small without calibration.
        max_length: most tokens per caption.
        runtime_dir: a `node_modules` folder with `@litertjs/core` (default: `default_runtime_dir()`).

    Returns:
        {"page": index.html, "encoder", "decoder", "manifest": paths in the folder}.
    """
    runtime = Path(runtime_dir) if runtime_dir is not None else default_runtime_dir()
    _check_runtime(runtime)
    target = Path(output_dir)
    with atomic_path(target) as staging:
        staging = Path(staging)
        staging.mkdir(parents=True, exist_ok=True)
        export_tflite(
            model,
            staging,
            encoder_quantization,
            decoder_quantization,
            representative_images,
            max_length,
            decoding=decoding,
            calibration=calibration,
            decoder_batch=int(decoding.get("beam_size", 1)),
        )
        for model_file in ("image_encoder.tflite", "decoder_step.tflite"):
            _write_gzip_copy(staging / model_file)
        page = resources.files("sat_tf.serving") / "page"
        for name in PAGE_FILES:
            text = _web_index() if name == "index.html" else (page / name).read_text(encoding="utf-8")
            (staging / name).write_text(text, encoding="utf-8")
        for source, destination in RUNTIME_FILES.items():
            (staging / destination).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(runtime / source, staging / destination)
    return {
        "page": target / "index.html",
        "encoder": target / "image_encoder.tflite",
        "decoder": target / "decoder_step.tflite",
        "manifest": target / "sat_tf_edge.json",
    }
