"""`relnet serve`: a local web page to ask trained RNs questions and see their relation maps.

FastAPI serves one static page (page.html, plain JavaScript) and a small JSON API; uvicorn runs
it. Every request that relnet cannot answer gets a 4xx JSON ``{"error": ...}`` and the server
keeps serving. Models load when the page first lists them and stay in memory; one lock serializes the model and
matplotlib work (neither is thread-safe, and one CPU request at a time is the fastest anyway).
In front of the app, ``Guard`` answers only the served host names (a page of another site must not drive it
through DNS rebinding) and stops reading a request body past MAX_BODY_BYTES.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import logging
import re
import socket
import sys
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from relnet import pretrained
from relnet.errors import ConfigError, DataError, RelnetError
from relnet.io import read_image
from relnet.look import example_split, explain_example, object_labels
from relnet.look.figure import draw, shown_pairs
from relnet.pretrained import load_trained

PAGE = Path(__file__).with_name("page.html")
MAX_UPLOAD_BYTES = 8 * 1024 * 1024  # an uploaded image file
UPLOAD_FORMATS = ("PNG", "JPEG")  # what photos and screenshots are; any other format is refused before decoding
# A request body: an upload of MAX_UPLOAD_BYTES as base64 (4/3 of it, 10.7 MiB) and the rest of the request fit.
MAX_BODY_BYTES = 12 * 1024 * 1024
TOO_LARGE = (f"the request body is over {MAX_BODY_BYTES:,} bytes, the most relnet serve reads "
             f"(an uploaded image may have {MAX_UPLOAD_BYTES:,})")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
EVERY_INTERFACE = frozenset({"", "0.0.0.0", "::"})
HOST_HEADER = re.compile(r"(\[[0-9a-f:.]+\]|[^:\[\]]+)(?::[0-9]{1,5})?")  # a name or [IPv6], then a port
KEPT_SPLITS = 64  # example sets held in memory (the data directories' and recent new scenes)
SHUTDOWN_SECONDS = 5  # after Ctrl-C, requests in flight get this long to finish (a second Ctrl-C: none)
# What models that do not read pixels take instead, by benchmark (an upload to one is refused with it).
INPUTS = {"babi": "text (stories and questions)", "physics": "ball trajectories"}


class NotFound(RelnetError):
    """An unknown model: answered with 404."""


class BodyTooLarge(HTTPException):
    """A request body found over MAX_BODY_BYTES while receiving it: answered with 413, the rest never read."""

    def __init__(self):
        super().__init__(413, TOO_LARGE)


class ExplainRequest(BaseModel):
    model: str = Field(max_length=300)  # a run's folder name is at most 255 bytes
    source: str = Field("examples", pattern="^(examples|new|upload)$")
    index: int = Field(0, ge=-2**31, lt=2**31)  # a negative index is answered as out of range
    seed: int = Field(0, ge=0, lt=2**32)
    question: str | None = Field(None, max_length=500)
    image: str | None = None  # a data: URL or base64 of an image file; bounded by MAX_BODY_BYTES


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
                split = self._examples(task, preset, info)
            else:
                split = task.generated_split(preset, info, 1, seed)
            self.splits[key] = split.to(self.device)
            while len(self.splits) > KEPT_SPLITS:  # every "New scene" click makes one: keep memory bounded
                self.splits.popitem(last=False)
        self.splits.move_to_end(key)
        return self.splits[key]

    def _examples(self, task, preset, info):
        """A model's --data split, else generated examples; without either, an error naming the option."""
        data = self.data.get(preset.task) or self.data.get(preset.task.split("-")[0])
        try:
            return example_split(task, preset, info, data, None, 0)
        except ConfigError as error:
            if data is not None:
                raise
            raise ConfigError(f"{error}: start relnet serve with --data {preset.task}=DIR") from None

    def no_examples(self, name: str) -> str | None:
        """Why a model has no examples to show, or None: the page opens on one that has them."""
        try:
            self.split(name, "examples", 0)
        except RelnetError as error:
            return str(error)
        return None

    def describe(self, name: str) -> dict:
        """What the page shows of a model; a model that cannot be loaded is listed with the reason."""
        try:
            task, preset, info, _ = self.get(name)
        except RelnetError as error:
            return {"name": name, "error": str(error)}
        return {"name": name, "preset": preset.name, "task": preset.task, "description": preset.description,
                "questions": task.questions(preset), "typed_questions": task.typed_questions,
                "images": _reads_images(preset), "no_examples": self.no_examples(name)}


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
    return read_image(io.BytesIO(raw), size, "the uploaded image", UPLOAD_FORMATS)


class Guard:
    """Pure ASGI middleware before the app. A page of another site can point its own name at this machine (DNS
    rebinding), but its requests then carry that name as their Host: only the served names are answered. A body
    is refused on a Content-Length over MAX_BODY_BYTES, or as soon as that much has arrived (chunked): never held."""

    def __init__(self, app, host: str):
        self.app, self.names, self.any_address = app, served_names(host), host in EVERY_INTERFACE

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        refusal = self.refused_host(headers.getlist("host")) or _refused_length(headers.get("content-length"))
        if refusal:
            status, message = refusal
            return await JSONResponse({"error": message}, status_code=status)(scope, receive, send)
        await self.app(scope, _counted(receive), send)

    def refused_host(self, hosts: list[str]) -> tuple[int, str] | None:
        match = HOST_HEADER.fullmatch(hosts[0].lower()) if len(hosts) == 1 else None
        name = match.group(1) if match else None
        if name in self.names or (name and self.any_address and _is_address(name)):
            return None
        served = ", ".join(sorted(self.names)) + (" and IP addresses" if self.any_address else "")
        asked = repr(hosts[0][:100]) if len(hosts) == 1 else f"{len(hosts)} Host headers"
        return 400, f"this server answers to the Host {served}, not to {asked}: a page of another site may not use it"


def served_names(host: str) -> frozenset[str]:
    """The Host names answered (without a port): the loopback ones and the bound host's; bound to every
    interface, this machine's name (and any IP address: a page reached by address is this server's own)."""
    if host in EVERY_INTERFACE:
        return LOOPBACK_NAMES | {socket.gethostname().lower()}
    return LOOPBACK_NAMES | {f"[{host.lower()}]" if ":" in host else host.lower()}


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _refused_length(value: str | None) -> tuple[int, str] | None:
    """A stated Content-Length over the limit, refused before any of the body is read."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        return 400, f"malformed request: Content-Length {value[:30]!r} is not a number of bytes"
    digits = value.lstrip("0")
    if len(digits) > len(str(MAX_BODY_BYTES)) or int(digits or 0) > MAX_BODY_BYTES:
        return 413, TOO_LARGE
    return None


def _counted(receive):
    """``receive``, raising BodyTooLarge once more than MAX_BODY_BYTES of body have arrived (a chunked body)."""
    received = 0

    async def counted():
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > MAX_BODY_BYTES:
            raise BodyTooLarge
        return message

    return counted


def _starlette_refusal(request, error: HTTPException) -> str:
    """The reason of one of Starlette's refusals: a body it could not parse (the cause), no such page or method."""
    cause = error.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return "malformed request: the body is not UTF-8 text"
    if isinstance(cause, RecursionError):
        return "malformed request: the body's JSON is nested too deeply"
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):  # Python's int-string limit
        return f"malformed request: a number in the body has more than {sys.get_int_max_str_digits():,} digits"
    if cause is not None:
        return f"malformed request: the body cannot be read ({type(cause).__name__})"
    if error.status_code in (404, 405):
        return f"{error.detail}: {request.method} {request.url.path[:200]}"
    return str(error.detail)


def _invalid_fields(error: RequestValidationError) -> tuple[int, str]:
    """The status and reason of a body that is not JSON (400) or not a request's fields (422)."""
    problems = error.errors()
    if problems and problems[0]["type"] == "json_invalid":
        return 400, (f"malformed request: the body is not valid JSON ({problems[0]['ctx']['error']} "
                     f"at character {problems[0]['loc'][-1]})")
    return 422, "malformed request: " + "; ".join(
        f"{'.'.join(map(str, problem['loc'][1:])) or 'body'}: {problem['msg']}" for problem in problems)


def create_app(runs: list[str] | None = None, data: dict[str, Path] | None = None, device: str = "cpu",
               host: str = "127.0.0.1") -> FastAPI:
    """The app, answering requests addressed to ``host`` (the address `relnet serve` binds) or to loopback."""
    models = Models(runs or [], data or {}, torch.device(device))
    lock = threading.Lock()
    app = FastAPI(title="relnet", description="Ask trained Relation Networks and see which pairs carried the answer.")
    app.state.models = models
    app.add_middleware(Guard, host=host)

    @app.exception_handler(RelnetError)
    async def relnet_error(request, error: RelnetError):
        return JSONResponse({"error": str(error)}, status_code=404 if isinstance(error, NotFound) else 400)

    @app.exception_handler(Exception)
    async def unexpected_error(request, error: Exception):
        # A bug, not a bad request: still JSON, so the page can show it, and the server goes on.
        return JSONResponse({"error": f"internal error ({type(error).__name__}: {error})"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def malformed_request(request, error: RequestValidationError):
        status, reason = _invalid_fields(error)
        return JSONResponse({"error": reason}, status_code=status)

    @app.exception_handler(HTTPException)
    async def refused_by_starlette(request, error: HTTPException):  # its own {"detail": ...}, in the one shape
        return JSONResponse({"error": _starlette_refusal(request, error)}, status_code=error.status_code,
                            headers=error.headers)

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
    image = _uploaded(request, preset, info) if request.source == "upload" else None
    split = models.split(request.model, "new" if request.source == "upload" else request.source, request.seed)
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


def _uploaded(request: ExplainRequest, preset, info) -> np.ndarray:
    """The uploaded image, checked before any example is made: a model that reads no pixels says what it takes."""
    if not _reads_images(preset):
        takes = INPUTS.get(preset.task.split("-")[0], "state descriptions")
        raise ConfigError(f"{request.model} takes {takes}, not images: pick a pixel model to upload one")
    if not request.image:
        raise ConfigError("source 'upload' needs an image")
    return decode_image(request.image, int(info["image_size"]))


def _not_cut_off(record: logging.LogRecord) -> bool:
    """Drops uvicorn's traceback of a request that a second Ctrl-C cancelled: a stop asked for, not an error."""
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def serve(host: str, port: int, runs: list[str], data: dict[str, Path], device: str) -> None:
    import uvicorn

    app = create_app(runs, data, device, host)
    # Bound here and handed to uvicorn: a taken address is said plainly, and the line below is true once printed.
    try:
        listening = socket.create_server((host, port))
    except (OSError, TypeError, ValueError) as error:  # TypeError/ValueError: a host name that cannot be encoded
        raise ConfigError(f"cannot serve on {host}:{port}: {getattr(error, 'strerror', None) or error}") from None
    print(f"relnet: serving on http://{host}:{port} (Ctrl-C to stop)", flush=True)
    # uvicorn re-raises a Ctrl-C once it has stopped, and the CLI reports it in one line (status 130).
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=SHUTDOWN_SECONDS)
    logging.getLogger("uvicorn.error").addFilter(_not_cut_off)
    uvicorn.Server(config).run(sockets=[listening])


__all__ = ["create_app", "decode_image", "serve"]
