"""`kdsweep demo`: the student in a browser page on this machine (Gradio, 127.0.0.1 only).

A person drops a garment photo (any size, colour or grayscale: converted as `kdsweep predict` converts it)
or picks a validation image, and sees the student's top classes with their probabilities, the teacher's
beside them, and what each costs (parameters, milliseconds for one image on this CPU). A file that is not
an image, or is larger than MAX_UPLOAD, gets a message on the page, not a traceback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from orchestrator.data import CLASSES
from orchestrator.errors import UserError

MAX_UPLOAD = "5mb"  # Gradio refuses a larger upload with its own message on the page
HOST = "127.0.0.1"  # the demo is for the person at this machine: nothing else can reach it
TOP = 3  # classes shown per model


@dataclass
class Model:
    name: str
    forward: object  # (N, 1, 28, 28) pixels in [0, 1] -> (N, 10) logits
    params: int

    def scores(self, image_u8: np.ndarray) -> tuple[dict[str, float], float]:
        """({class: probability} of the top classes, milliseconds for this one image)."""
        x = torch.tensor(image_u8, dtype=torch.float32).div(255).view(1, 1, 28, 28)
        t0 = time.perf_counter()
        with torch.no_grad():
            p = torch.softmax(self.forward(x), 1)[0]
        ms = (time.perf_counter() - t0) * 1e3
        top = p.topk(TOP)
        return {CLASSES[int(i)]: float(v) for v, i in zip(top.values, top.indices)}, ms


def load_student(path: str | Path) -> Model:
    """An exported student (`student.pt2`: pixels in, logits out, its test-time views inside)."""
    import json

    path = Path(path)
    if not path.is_file() or path.suffix != ".pt2":
        raise UserError(f"--model {path}: no such student.pt2; pass an export's (models/student/student.pt2)")
    program = torch.export.load(str(path)).module()
    metrics = path.with_name("metrics.json")
    m = json.loads(metrics.read_text()) if metrics.is_file() else {}
    return Model(f"student {m.get('student', path.name)}", program, int(m.get("params", 0)))


def load_teacher_model(path: str | Path) -> Model:
    """A teacher checkpoint with its JSON sidecar, taking pixels in [0, 1] as the student does."""
    from orchestrator.teacher.model import load_teacher
    from trainables.augment import to_input

    net, info = load_teacher(path)
    pre = info.preprocess

    def forward(x):  # (N, 1, 28, 28) in [0, 1] -> logits
        u8 = x[:, 0].mul(255)
        return net(to_input(u8, pre.mean, pre.std, pre.channels, pre.size).contiguous())

    return Model(f"teacher {info.arch} ({Path(path).name})", forward, info.params)


def classify_upload(path: str | None, student: Model, teacher: Model | None) -> tuple[dict, dict, str]:
    """One uploaded file -> (student's top classes, teacher's, a line under them): a message on the page where
    the file is not an image."""
    from orchestrator.release.predict import NotAnImageError, load_image

    if not path:
        return {}, {}, "Drop a garment photo, or pick a validation image."
    try:
        image = load_image(Path(path))
    except NotAnImageError:
        return {}, {}, f"**{Path(path).name} is not an image** this demo can read: drop a PNG or JPEG photo."
    return _both(image, student, teacher)


def _both(image: np.ndarray, student: Model, teacher: Model | None) -> tuple[dict, dict, str]:
    s, s_ms = student.scores(image)
    t, t_ms = teacher.scores(image) if teacher else ({}, 0.0)
    line = f"{student.name}: {student.params:,} parameters, {s_ms:.1f} ms for this image on this CPU"
    if teacher:
        line += f"; {teacher.name}: {teacher.params:,} parameters, {t_ms:.1f} ms"
    return s, t, line


def build(student: Model, teacher: Model | None, examples: np.ndarray, labels: np.ndarray):
    """The page: an upload, a strip of validation images to pick from, both models' top classes."""
    import gradio as gr

    with gr.Blocks(title="kdsweep demo") as page:
        gr.Markdown(
            "# kdsweep: the student at work\nA Fashion-MNIST classifier under 100,000 parameters, distilled "
            "from a ResNet-50. Drop a garment photo (a light background is inverted: the training images are "
            "white garments on black) or pick a validation image."
        )
        with gr.Row():
            # any file reaches classify_upload, which says on the page when it is not an image
            upload = gr.File(label="a garment photo (PNG or JPEG)", type="filepath")
            gallery = gr.Gallery(
                [(im, CLASSES[int(y)]) for im, y in zip(examples, labels)],
                label="or a validation image",
                columns=8,
                height=220,
                allow_preview=False,
            )
        with gr.Row():
            s_out = gr.Label(num_top_classes=TOP, label=student.name)
            t_out = gr.Label(num_top_classes=TOP, label=teacher.name if teacher else "no teacher loaded")
        info = gr.Markdown()
        upload.change(lambda p: classify_upload(p, student, teacher), upload, [s_out, t_out, info], api_name="predict")

        def picked(evt):
            return _both(examples[evt.index], student, teacher)

        picked.__annotations__ = {"evt": gr.SelectData}  # Gradio passes the event by this type (a real one, not
        # the string `from __future__ import annotations` would leave)

        gallery.select(picked, None, [s_out, t_out, info], api_name="pick")
    return page


def serve(
    model: str, teacher: str | None, port: int, data_dir: str | None = None, block: bool = True, n_examples: int = 16
):
    """Load the models and 16 validation images, and serve the page on 127.0.0.1:`port`."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("kdsweep demo needs Gradio: .venv/bin/pip install -e '.[demo]'") from None
    from orchestrator.data import load_split

    student = load_student(model)
    t = load_teacher_model(teacher) if teacher else None
    split = load_split(data_dir, val_limit=n_examples)
    page = build(student, t, split.val_x, split.val_y)
    page.launch(server_name=HOST, server_port=port, max_file_size=MAX_UPLOAD, prevent_thread_lock=not block)
    return page
