"""`relnet serve`: the JSON API through FastAPI's test client, and the page in a real headless Chromium."""

import asyncio
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from relnet.errors import ConfigError  # noqa: E402
from relnet.look.server import create_app  # noqa: E402
from relnet.tasks.sort_of_clevr.generate import generate  # noqa: E402


def local_client(app) -> TestClient:
    """A test client that addresses the app as a browser on this machine does (the server answers no other Host)."""
    return TestClient(app, base_url="http://127.0.0.1:8000")


@pytest.fixture(scope="module")
def client(small_datasets):
    return local_client(create_app(data={"babi": small_datasets["babi"]}))


def png_data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def explain(client, **body):
    return client.post("/api/explain", json=body)


def test_page_and_models(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="relation-map"' in page.text
    models = {model["name"]: model for model in client.get("/api/models").json()}
    assert {"pretrained:sort-of-clevr-pixels", "pretrained:sort-of-clevr-state", "pretrained:babi",
            "pretrained:physics-connections", "pretrained:clevr-state"} <= set(models)
    assert "Is the red object on the left?" in models["pretrained:sort-of-clevr-pixels"]["questions"]
    assert models["pretrained:babi"]["questions"] == []  # typed


@pytest.mark.parametrize("model, source", [("pretrained:sort-of-clevr-pixels", "examples"),
                                           ("pretrained:sort-of-clevr-state", "new"),
                                           ("pretrained:physics-connections", "new"),
                                           ("pretrained:babi", "examples"),
                                           ("pretrained:clevr-state", "new")])
def test_every_shipped_model_answers_with_a_relation_map(client, model, source):
    reply = explain(client, model=model, source=source, index=0, seed=5)
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["answer"] and 1 <= len(result["top"]) <= 5 and result["question"]
    assert result["picture"].startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(result["picture"].split(",", 1)[1]))) as picture:
        assert picture.size == (1000, 500)
    assert result["objects"] and all("share" in row for row in result["objects"])


def test_a_question_typed_or_picked_and_an_uploaded_image(client):
    reply = explain(client, model="pretrained:babi", index=0, question="Where is mary quuxly?").json()
    assert reply["question"] == "Where is mary quuxly?" and reply["unknown_words"] == ["quuxly"]
    assert reply["truth"] is None
    scene = generate(1, 11)
    image = scene["images"][0]
    reply = explain(client, model="pretrained:sort-of-clevr-pixels", source="upload", image=png_data_url(image),
                    question="What is the shape of the blue object?").json()
    shape = ("square", "circle")[int(scene["object_shape"][0][2])]  # object k has color k; blue is 2
    assert reply["answer"] == shape and reply["truth"] is None


@pytest.mark.parametrize("body, status, message", [
    ({"model": "pretrained:nope"}, 404, "unknown model 'pretrained:nope'"),
    ({"model": "pretrained:sort-of-clevr-state", "index": 10_000}, 400, "out of range"),
    ({"model": "pretrained:sort-of-clevr-state", "index": -1}, 400, "out of range"),
    ({"model": "pretrained:babi", "question": "zzz qqq"}, 400, "has no word the model knows"),
    ({"model": "pretrained:sort-of-clevr-pixels", "question": "Why is the sky blue?"}, 400, "is not one of"),
    ({"model": "pretrained:sort-of-clevr-pixels", "source": "upload", "image": "aGVsbG8="}, 400,
     "the uploaded image: image unreadable"),
    ({"model": "pretrained:sort-of-clevr-pixels", "source": "upload", "image": "%%%"}, 400, "not valid base64"),
    ({"model": "pretrained:sort-of-clevr-pixels", "source": "upload", "image": "data:image/png;base64"}, 400,
     "data: URL without data"),
    ({"model": "pretrained:sort-of-clevr-pixels", "source": "upload"}, 400, "needs an image"),
    ({"model": "pretrained:sort-of-clevr-state", "source": "upload", "image": "aGVsbG8="}, 400, "not images"),
    ({"model": "pretrained:sort-of-clevr-state", "source": "elsewhere"}, 422, "malformed request: source"),
    ({"index": 0}, 422, "malformed request: model"),
])
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(client, body, status, message):
    reply = explain(client, **body)
    assert reply.status_code == status and message in reply.json()["error"]
    assert explain(client, model="pretrained:sort-of-clevr-state").status_code == 200


def test_a_clevr_run_answers_typed_questions_about_new_scenes(small_datasets, tmp_path):
    from relnet.cli import main

    run = tmp_path / "clevr-state"
    assert main(["train", "--preset", "clevr-state", "--data", str(small_datasets["clevr"]), "--out", str(run),
                 "--epochs", "1", "--no-progress"]) == 0
    client = local_client(create_app(runs=[str(run)], data={"clevr": small_datasets["clevr"]}))
    models = {model["name"]: model for model in client.get("/api/models").json()}
    assert models["clevr-state"]["typed_questions"] and not models["clevr-state"]["images"]
    assert explain(client, model="clevr-state", index=0).json()["truth"] is not None  # a cached val question
    reply = explain(client, model="clevr-state", source="new", seed=4, question="Is there a blorp cube?").json()
    assert reply["unknown_words"] == ["blorp"] and reply["question"] == "Is there a blorp cube?"
    assert len(reply["objects"]) >= 3


def test_a_broken_run_is_listed_unavailable_and_names_must_differ(tmp_path, monkeypatch):
    import torch

    broken = tmp_path / "broken"
    broken.mkdir()
    torch.save({"version": 0}, broken / "checkpoint.pt")
    client = local_client(create_app(runs=[str(broken)]))
    models = {model["name"]: model for model in client.get("/api/models").json()}
    assert "not a relnet checkpoint" in models["broken"]["error"]
    assert "error" not in models["pretrained:sort-of-clevr-state"]
    assert explain(client, model="broken").status_code == 400
    other = tmp_path / "elsewhere" / "broken"
    other.mkdir(parents=True)
    torch.save({}, other / "checkpoint.pt")
    with pytest.raises(ConfigError, match="another run is also named 'broken'"):
        create_app(runs=[str(broken), str(other)])


def test_new_scenes_kept_in_memory_are_bounded(monkeypatch):
    import relnet.look.server as server

    monkeypatch.setattr(server, "KEPT_SPLITS", 3)
    app = create_app()
    client = local_client(app)
    for seed in range(6):
        assert explain(client, model="pretrained:sort-of-clevr-state", source="new", seed=seed).status_code == 200
    assert len(app.state.models.splits) == 3


def test_babi_needs_its_data(small_datasets):
    reply = explain(local_client(create_app()), model="pretrained:babi")
    assert reply.status_code == 400 and "babi has no generator" in reply.json()["error"]


@pytest.mark.parametrize("bound, host, served", [
    ("127.0.0.1", "127.0.0.1", True), ("127.0.0.1", "127.0.0.1:8000", True), ("127.0.0.1", "LOCALHOST:8000", True),
    ("127.0.0.1", "[::1]:8000", True), ("127.0.0.1", "attacker.example", False),
    ("127.0.0.1", "attacker.example:8000", False), ("127.0.0.1", "127.0.0.1.attacker.example", False),
    ("127.0.0.1", "localhost:8000@attacker.example", False), ("127.0.0.1", "127.0.0.1:port", False),
    ("127.0.0.1", "", False), ("127.0.0.1", "192.168.1.5:8000", False),
    ("myhost.lan", "myhost.lan:8000", True), ("myhost.lan", "attacker.example:8000", False),
    ("::1", "[::1]", True), ("0.0.0.0", "192.168.1.5:8000", True), ("0.0.0.0", "attacker.example:8000", False),
])
def test_only_the_served_host_names_are_answered(bound, host, served):
    """DNS rebinding: a page of another site that points its own name at this machine sends that name as its Host."""
    client = local_client(create_app(host=bound))
    replies = [client.get("/api/models", headers={"host": host}), client.get("/", headers={"host": host}),
               client.post("/api/explain", json={"model": "pretrained:sort-of-clevr-state"}, headers={"host": host})]
    if served:
        assert [reply.status_code for reply in replies] == [200, 200, 200]
    else:
        assert {reply.status_code for reply in replies} == {400}
        assert all(list(reply.json()) == ["error"] and "Host" in reply.json()["error"] for reply in replies)


def post_through_asgi(app, chunks, headers=()):
    """POST /api/explain to ``app`` as uvicorn does, the body read from ``chunks`` one message at a time (a chunked
    upload): the status, the reply and how many chunks the app read."""
    chunks, read, sent = iter(chunks), [], []

    async def receive():
        chunk = next(chunks, None)
        read.append(chunk)
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/explain", "raw_path": b"/api/explain", "query_string": b"", "root_path": "",
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"), *headers]}
    asyncio.run(app(scope, receive, send))
    status = next(message["status"] for message in sent if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return status, json.loads(body), len(read)


def padded_request(mebibytes: int) -> list[bytes]:
    """A valid request whose JSON is padded with ``mebibytes`` MiB of spaces, in chunks of 1 MiB."""
    return [b"{"] + [b" " * 2**20] * mebibytes + [b'"model": "pretrained:sort-of-clevr-state"}']


def test_a_body_over_the_limit_is_refused_before_it_is_read(monkeypatch):
    import relnet.look.server as server

    asked = []
    monkeypatch.setattr(server, "_explain", lambda *arguments: asked.append(arguments) or {})
    app = create_app()
    status, reply, read = post_through_asgi(app, padded_request(64))
    assert status == 413 and "12,582,912 bytes" in reply["error"] and read <= 14  # 12 MiB and one chunk
    status, reply, read = post_through_asgi(app, padded_request(64), [(b"content-length", b"400000000")])
    assert status == 413 and "12,582,912 bytes" in reply["error"] and read == 0  # refused on its stated length
    assert asked == []
    assert post_through_asgi(app, padded_request(2))[0] == 200 and len(asked) == 1


@pytest.mark.parametrize("body, content_type, status, reason", [
    (b'{"model": "\xff\xfe"}', "application/json", 400, "not UTF-8"),
    (b'{"model": "pretrained:babi", "index": ' + b"9" * 5000 + b"}", "application/json", 400, "4,300 digits"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested too deeply"),
    (b'{"model": "pretrained:babi",', "application/json", 400, "not valid JSON"),
    (b'{"model": "pretrained:sort-of-clevr-state", "index": ' + b"9" * 4000 + b"}", "application/json", 422,
     "index"),
    (b'{"model": "pretrained:sort-of-clevr-state", "seed": ' + b"9" * 4000 + b"}", "application/json", 422, "seed"),
    (b'{"model": "' + b"x" * 100_000 + b'"}', "application/json", 422, "model"),
    (b'{"model": "pretrained:sort-of-clevr-state"}', "text/plain", 422, "body"),
], ids=["not utf-8", "5000 digits", "deep nesting", "cut short", "huge index", "huge seed", "long model name",
        "not json"])
def test_every_error_has_the_one_shape_and_its_reason(client, body, content_type, status, reason):
    reply = client.post("/api/explain", content=body, headers={"content-type": content_type})
    assert reply.status_code == status and list(reply.json()) == ["error"], reply.text[:300]
    assert reason in reply.json()["error"] and len(reply.json()["error"]) < 400, reply.json()["error"][:300]


def test_unknown_pages_and_methods_answer_in_the_one_shape(client):
    for reply, status in [(client.get("/nope"), 404), (client.put("/api/explain"), 405),
                          (client.get("/api/explain"), 405)]:
        assert reply.status_code == status and list(reply.json()) == ["error"]


def test_an_image_sent_to_a_text_model_is_refused_as_not_an_image():
    client = local_client(create_app())
    image = png_data_url(generate(1, 3)["images"][0])
    reply = explain(client, model="pretrained:babi", source="upload", image=image)
    assert reply.status_code == 400 and "takes text" in reply.json()["error"] and "not images" in reply.json()["error"]
    reply = explain(client, model="pretrained:physics-connections", source="upload", image=image)
    assert reply.status_code == 400 and "not images" in reply.json()["error"]


def test_models_say_whether_they_can_show_examples(small_datasets):
    listed = {model["name"]: model for model in local_client(create_app()).get("/api/models").json()}
    assert "--data babi=DIR" in listed["pretrained:babi"]["no_examples"]
    assert listed["pretrained:sort-of-clevr-pixels"]["no_examples"] is None
    with_data = local_client(create_app(data={"babi": small_datasets["babi"]})).get("/api/models").json()
    assert all(model["no_examples"] is None for model in with_data)


@pytest.mark.parametrize("model", ["pretrained:sort-of-clevr-state", "pretrained:sort-of-clevr-pixels"])
@pytest.mark.parametrize("source", ["examples", "new"])
def test_a_picked_question_about_a_known_scene_shows_its_truth(client, model, source):
    for index in range(0, 20, 3):
        own = explain(client, model=model, source=source, seed=9, index=index).json()
        picked = explain(client, model=model, source=source, seed=9, index=index, question=own["question"]).json()
        assert own["truth"] is not None and picked["truth"] == own["truth"], (own["question"], picked["truth"])


def test_the_truth_of_every_question_matches_the_generator():
    from relnet.tasks.sort_of_clevr.generate import answer, question_text

    scenes = generate(40, 21)
    for q in range(len(scenes["answer"])):
        image = scenes["q_image"][q]
        kind, subtype, colors = scenes["q_kind"][q], scenes["q_subtype"][q], tuple(scenes["q_color"][q])
        found = answer(scenes["object_shape"][image], scenes["object_xy"][image], kind, subtype, colors)
        assert found == scenes["answer"][q], question_text(kind, subtype, colors)


def test_cli_serve_refuses_bad_options(tmp_path, capsys):
    from relnet.cli import main

    assert main(["serve", "--data", "babi"]) == 2
    assert "expected TASK=DIR" in capsys.readouterr().err
    assert main(["serve", "--run", str(tmp_path)]) == 2
    assert "no checkpoint.pt there" in capsys.readouterr().err
    with socket.create_server(("127.0.0.1", 0)) as taken:
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 2
    assert "cannot serve on 127.0.0.1:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--port", "70000"])
    assert "expected a port number from 1 to 65535" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def test_the_page_in_a_real_browser(tmp_path):
    """Headless Chromium loads the page served by `relnet serve`: it opens on an example answered at
    once; a picked question shows its answer, true answer and relation map; an error then clears
    that result, and a model without examples says why. CI installs Debian's chromium and
    chromium-driver (.ci/run); on a machine without them the test is skipped, in CI it fails."""
    if not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver") if not os.environ.get("CI") else __import__(
        "selenium.webdriver", fromlist=["webdriver"])
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "relnet.cli", "serve", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "api/models", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.5)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1100"):
            options.add_argument(flag)
        browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
        try:
            browser.get(url)
            wait = WebDriverWait(browser, 60)

            def text(element_id: str) -> str:  # the text content, shown or not
                return browser.find_element(By.ID, element_id).get_attribute("textContent")

            wait.until(lambda b: text("answer").startswith("Answer:"))  # the first view: an example, unasked
            assert Select(browser.find_element(By.ID, "model")).first_selected_option.text == \
                "pretrained:sort-of-clevr-pixels"
            picture = browser.find_element(By.ID, "relation-map")
            wait.until(lambda b: b.execute_script("return arguments[0].naturalWidth", picture) == 1000)
            Select(browser.find_element(By.ID, "model")).select_by_value("pretrained:sort-of-clevr-state")
            Select(browser.find_element(By.ID, "question-choice")).select_by_visible_text(
                "What is the shape of the object furthest from the red object?")
            browser.find_element(By.ID, "ask").click()
            wait.until(lambda b: text("shown-question").endswith("furthest from the red object?"))
            assert text("answer").split()[1] in ("square", "circle"), text("answer")
            assert text("truth") in ("true answer: square", "true answer: circle"), text("truth")  # computed
            assert picture.get_attribute("src").startswith("data:image/png;base64,")
            wait.until(lambda b: b.execute_script("return arguments[0].naturalWidth", picture) == 1000)
            assert text("error") == ""
            shot = Path(os.environ.get("RELNET_SCREENSHOT", tmp_path / "page.png"))
            assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
            browser.find_element(By.ID, "index").clear()
            browser.find_element(By.ID, "index").send_keys("100000")
            browser.find_element(By.ID, "ask").click()  # an error after a good answer
            wait.until(lambda b: "out of range" in text("error"))
            assert not browser.find_element(By.ID, "result").is_displayed() and text("answer") == ""
            assert not browser.execute_script("return arguments[0].hasAttribute('src')", picture)
            Select(browser.find_element(By.ID, "model")).select_by_value("pretrained:babi")
            wait.until(lambda b: "no examples to show" in text("error"))
            assert "--data babi=DIR" in text("error") and not browser.find_element(By.ID, "result").is_displayed()
        finally:
            browser.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
