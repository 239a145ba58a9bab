"""`kdsweep predict`: classify image files (PNG/JPEG, any size, colour or grayscale) or an IDX file with an
exported student (`student.pt2` or `student.onnx`).

Images are converted as the training images were: grayscale, the garment fitted into 28x28 with its
aspect ratio kept, white garment on a black background (a light background is inverted).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orchestrator.data import CLASSES, DataFormatError, read_idx_images
from orchestrator.errors import UserError


class NotAnImageError(UserError):
    pass


def load_image(path: Path) -> np.ndarray:
    """One image file -> uint8 (28, 28), white garment on black."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L")
    except (UnidentifiedImageError, OSError) as e:
        raise NotAnImageError(
            f"{path}: not an image PIL can read ({e.__class__.__name__}); pass PNG/JPEG files "
            "or a Fashion-MNIST IDX file"
        ) from None
    a = np.asarray(im, dtype=np.uint8)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if border.mean() > 127:  # a product photo: dark garment on white -> Fashion-MNIST's white on black
        a = 255 - a
    im = Image.fromarray(a)
    w, h = im.size
    scale = 28 / max(w, h)
    im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    canvas = Image.new("L", (28, 28), 0)
    canvas.paste(im, ((28 - im.size[0]) // 2, (28 - im.size[1]) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def load_inputs(paths: list[str]) -> tuple[list[str], np.ndarray]:
    """(names, uint8 (N, 28, 28)) from image files and/or IDX image files (.gz or raw)."""
    names, images = [], []
    for p in map(Path, paths):
        if not p.is_file():
            raise NotAnImageError(f"{p}: no such file")
        head = p.read_bytes()[:4]
        if head[:2] == b"\x1f\x8b" or head == b"\x00\x00\x08\x03":  # gzip or raw IDX uint8 3-d
            try:
                x = read_idx_images(p)
            except DataFormatError as e:
                raise NotAnImageError(f"{p}: {e}") from None
            names += [f"{p.name}[{i}]" for i in range(len(x))]
            images.append(x)
        else:
            names.append(str(p))
            images.append(load_image(p)[None])
    return names, np.concatenate(images)


def classify(model_path: str, paths: list[str]) -> list[tuple[str, str, float]]:
    """(name, class name, probability) per input. The arguments are checked in the order they are written
    (the model, then the images), so the first thing wrong is the one said."""
    import torch

    if not Path(model_path).is_file():
        raise UserError(
            f"--model {model_path}: no such model; pass an exported student.pt2 or student.onnx "
            "(models/student/ or artifacts/<name>/)"
        )
    names, x = load_inputs(paths)
    pixels = torch.as_tensor(x).float().div_(255).unsqueeze(1)  # (N, 1, 28, 28) in [0, 1]
    if str(model_path).endswith(".onnx"):
        import onnxruntime as ort

        sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        logits = torch.as_tensor(sess.run(None, {sess.get_inputs()[0].name: pixels.numpy()})[0])
    else:
        model = torch.export.load(str(model_path)).module()
        with torch.no_grad():
            logits = model(pixels)
    prob = logits.softmax(1)
    p, k = prob.max(1)
    return [(n, CLASSES[int(c)], float(q)) for n, c, q in zip(names, k, p)]
