"""`relnet serve`: a local web page to ask trained RNs questions and see their relation maps.

FastAPI serves one static page (page.html, plain JavaScript) and a small JSON API; uvicorn runs
it. Every request that relnet cannot answer gets a 4xx JSON ``{"error": ...}`` and the server
keeps serving. Models load when the page first lists them and stay in memory; one lock serializes the model and
matplotlib work (neither is thread-safe, and one CPU request at a time is the fastest anyway).
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from relnet import pretrained
from relnet.errors import ConfigError, DataError, RelnetError
from relnet.io import read_image
from relnet.look import example_split, explain_example, object_labels
from relnet.look.figure import draw, shown_pairs
from relnet.pretrained import load_trained

PAGE = Path(__file__).with_name("page.html")
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
KEPT_SPLITS = 64  # example sets held in memory (the data directories' and recent new scenes)


class NotFound(RelnetError):
    """An unknown model: answered with 404."""


class ExplainRequest(BaseModel):
    model: str
    source: str = Field("examples", pattern="^(examples|new|upload)$")
    index: int = 0
    seed: int = Field(0, ge=0)
    question: str | None = Field(None, max_length=500)
    image: str | None = Field(None, max_length=2 * MAX_UPLOAD_BYTES)  # a data: URL or base64 of an image file


class Models:
    """The models the page offers (every shipped one and the runs given), loaded on first use."""

    def __init__(self, runs: list[str], data: dict[str, Path], device: torch.device):
        self.specs = {f"{pretrained.PREFIX}{name}": f"{pretrained.PREFIX}{name}" for name in pretrained.names()}
        for run in runs:
            if not (Path(run) / "checkpoint.pt").is_file():
                raise ConfigError(f"{run}: no checkpoint.pt there (expected a run directory written by `relnet train`)")
            name = Path(run).resolve().name
            if name in self.specs:
                raise ConfigError(f"--run {run}: another run is also named {name!r}; give runs distinct folder names")
            self.specs[name] = run
        self.data, self.device = data, device
        self.loaded: dict[str, tuple] = {}
        self.splits: OrderedDict[tuple, object] = OrderedDict()  # the most recently used, at most KEPT_SPLITS

    def get(self, name: str):
        if name not in self.specs:
            raise NotFound(f"unknown model {name!r}: expected one of {', '.join(self.specs)}")
        if name not in self.loaded:
            self.loaded[name] = load_trained(self.specs[name], self.device)
        return self.loaded[name]

    def split(self, name: str, source: str, seed: int):
        """The examples of a model: its task's --data split (or generated ones), or one new scene."""
        task, preset, info, _ = self.get(name)
        key = (name, source, seed if source != "examples" else 0)
        if key not in self.splits:
            if source == "examples":
                data = self.data.get(preset.task) or self.data.get(preset.task.split("-")[0])
                split = example_split(task, preset, info, data, None, 0)
            else:
                split = task.generated_split(preset, info, 1, seed)
            self.splits[key] = split.to(self.device)
            while len(self.splits) > KEPT_SPLITS:  # every "New scene" click makes one: keep memory bounded
                self.splits.popitem(last=False)
        self.splits.move_to_end(key)
        return self.splits[key]

    def describe(self, name: str) -> dict:
        """What the page shows of a model; a model that cannot be loaded is listed with the reason."""
        try:
            task, preset, info, _ = self.get(name)
        except RelnetError as error:
            return {"name": name, "error": str(error)}
        return {"name": name, "preset": preset.name, "task": preset.task, "description": preset.description,
                "questions": task.questions(preset), "typed_questions": task.typed_questions,
                "images": _reads_images(preset)}


def _reads_images(preset) -> bool:
    return preset.model.get("input", preset.data.get("inputs")) == "pixels"


def decode_image(text: str, size: int) -> np.ndarray:
    """An uploaded image (data URL or base64) as uint8 [size, size, 3]; a DataError if it is not one."""
    payload = text
    if text.startswith("data:"):
        _, comma, payload = text.partition(",")
        if not comma:
            raise DataError("the uploaded image is a data: URL without data (expected data:image/...;base64,...)")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise DataError("the uploaded image is not valid base64") from None
    if len(raw) > MAX_UPLOAD_BYTES:
        raise DataError(f"the uploaded image is {len(raw):,} bytes; at most {MAX_UPLOAD_BYTES:,} are accepted")
    return read_image(io.BytesIO(raw), size, "the uploaded image")


def create_app(runs: list[str] | None = None, data: dict[str, Path] | None = None, device: str = "cpu") -> FastAPI:
    models = Models(runs or [], data or {}, torch.device(device))
    lock = threading.Lock()
    app = FastAPI(title="relnet", description="Ask trained Relation Networks and see which pairs carried the answer.")
    app.state.models = models

    @app.exception_handler(RelnetError)
    async def relnet_error(request, error: RelnetError):
        return JSONResponse({"error": str(error)}, status_code=404 if isinstance(error, NotFound) else 400)

    @app.exception_handler(Exception)
    async def unexpected_error(request, error: Exception):
        # A bug, not a bad request: still JSON, so the page can show it, and the server goes on.
        return JSONResponse({"error": f"internal error ({type(error).__name__}: {error})"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def malformed_request(request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, problem['loc'][1:])) or 'body'}: {problem['msg']}"
                             for problem in error.errors())
        return JSONResponse({"error": f"malformed request: {problems}"}, status_code=422)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text()

    @app.get("/api/models")
    def list_models() -> list[dict]:
        with lock:
            return [models.describe(name) for name in models.specs]

    @app.post("/api/explain")
    def explain(request: ExplainRequest) -> dict:
        with lock:
            return _explain(models, request)

    return app


def _explain(models: Models, request: ExplainRequest) -> dict:
    task, preset, info, model = models.get(request.model)
    if request.source == "upload" and not request.image:
        raise ConfigError("source 'upload' needs an image")
    split = models.split(request.model, "new" if request.source == "upload" else request.source, request.seed)
    image = None
    if request.source == "upload":
        if not _reads_images(preset):
            raise ConfigError(f"{request.model} reads state descriptions, not images: pick a pixel model to upload one")
        image = decode_image(request.image, int(info["image_size"]))
    question = request.question.strip() if request.question and request.question.strip() else None
    explained = explain_example(task, preset, info, model, split, request.index, question, image)
    view, relation = explained.view, explained.relation
    labels = object_labels(view, len(relation.objects))
    return {
        "question": view.question, "truth": view.truth, "answer": relation.answer, "probability": relation.probability,
        "top": [{"answer": name, "probability": p} for name, p in relation.top], "meaning": relation.meaning,
        "objects": [{"label": label, "share": float(share)} for label, share in zip(labels, relation.objects)],
        "pairs": [{"first": labels[i], "second": labels[j], "value": value} for i, j, value in shown_pairs(relation)],
        "unknown_words": explained.unknown_words, "examples": len(split), "index": request.index,
        "picture": "data:image/png;base64," + base64.b64encode(draw(explained)).decode(),
    }


def serve(host: str, port: int, runs: list[str], data: dict[str, Path], device: str) -> None:
    import socket

    import uvicorn

    app = create_app(runs, data, device)
    try:  # say so plainly rather than through uvicorn's log when the address is taken
        with socket.create_server((host, port)):
            pass
    except (OSError, TypeError, ValueError) as error:  # TypeError/ValueError: a host name that cannot be encoded
        raise ConfigError(f"cannot serve on {host}:{port}: {getattr(error, 'strerror', None) or error}") from None
    print(f"relnet: serving on http://{host}:{port} (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = ["create_app", "decode_image", "serve"]
