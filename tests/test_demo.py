"""`kdsweep demo` as a person meets it: the page served on 127.0.0.1 only, drawn by headless Chromium, a
photo classified by the student and the teacher through the page's own API, a file that is not an image
answered with a message on the page."""

import os
import shutil
import socket
import subprocess

import pytest
from PIL import Image

from orchestrator.data import CLASSES, load_split
from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.slow  # a server and a browser: seconds, not in `make test-fast`


@pytest.fixture(scope="module")
def demo():
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # nothing leaves the machine
    from orchestrator.release.demo import serve

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    page = serve(str(ROOT / "models/student/student.pt2"), str(ROOT / "models/teacher/resnet50.pt"), port, block=False)
    yield page, f"http://127.0.0.1:{port}/"
    page.close()


def test_the_page_is_served_on_this_machine_only_and_draws_in_a_browser(demo, tmp_path):
    page, url = demo
    assert page.server_name == "127.0.0.1"
    assert CHROMIUM, "this test needs a browser: apt-get install -y chromium (make test installs it)"
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", "--virtual-time-budget=15000", url],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    assert "kdsweep: the student at work" in dom and "or a validation image" in dom  # rendered by its script


def test_a_photo_gets_both_models_classes_and_a_non_image_a_message(demo, tmp_path):
    """A validation image as a product photo (dark garment on white, 200x200) is classified by both models;
    a text file gets the page's message, not an error."""
    from gradio_client import Client, handle_file

    _, url = demo
    client = Client(url, verbose=False)
    split = load_split(val_limit=1)
    Image.fromarray(255 - split.val_x[0]).resize((200, 200)).save(tmp_path / "item.png")
    student, teacher, line = client.predict(handle_file(str(tmp_path / "item.png")), api_name="/predict")
    truth = CLASSES[int(split.val_y[0])]
    assert student["label"] == truth == teacher["label"] and len(student["confidences"]) == 3
    assert "student res3_w16_32_76_s121: 96,906 parameters" in line and "23,528,522 parameters" in line
    (tmp_path / "notes.png").write_text("not a picture")
    student, teacher, line = client.predict(handle_file(str(tmp_path / "notes.png")), api_name="/predict")
    assert "**notes.png is not an image** this demo can read" in line and not student.get("label")


def test_picking_a_validation_image_classifies_it(demo):
    """The gallery's select handler, called as Gradio calls it (the event's index): both models' classes."""
    from types import SimpleNamespace

    page, _ = demo
    pick = next(f.fn for f in page.fns.values() if f.api_name == "pick")
    student, teacher, line = pick(SimpleNamespace(index=0))
    truth = CLASSES[int(load_split(val_limit=1).val_y[0])]
    assert max(student, key=student.get) == truth and len(teacher) == 3 and "ms for this image" in line


def test_an_upload_over_the_limit_is_refused_with_a_message(demo):
    """The server itself refuses an upload over MAX_UPLOAD (5 MB) with a message (HTTP 413), whatever the
    page's own check does."""
    import httpx

    _, url = demo
    r = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.png", os.urandom(6 << 20), "image/png")})
    assert r.status_code == 413 and "File size exceeded maximum allowed size of 5242880 bytes" in r.text
