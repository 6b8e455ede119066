"""The page's routes: the page itself (`sat_tf/serving/page/`, no build step) and its settings."""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response, jsonify

from sat_tf.serving.context import serving_context

PAGE_FILES = {"index.html": "text/html", "page.js": "text/javascript", "page.css": "text/css"}

page = Blueprint("page", __name__)


def page_file(name: str) -> bytes:
    return (resources.files("sat_tf.serving") / "page" / name).read_bytes()


@page.get("/")
@page.get("/<any(page.js, page.css):filename>")
def page_asset(filename: str = "index.html"):
    return Response(page_file(filename), mimetype=PAGE_FILES[filename])


@page.get("/page-config.json")
def page_config():
    context = serving_context()
    signatures = context.model.image_signatures()
    return jsonify(
        {
            "model": context.name,
            "max_request_bytes": context.limits.max_request_bytes,
            "max_image_pixels": context.limits.max_image_pixels,
            "not_sure_below": context.settings["not_sure_below"],
            "signature": "beam_search" if "beam_search" in signatures else "serving_default",
        }
    )
