"""The teacher-logit cache built across a Ray cluster: a pool of actors, each holding the teacher once,
computes the missing chunks on every node's CPUs (or GPUs); the driver writes each chunk as it arrives.

Everything the cache promises stays: the same fingerprint, chunks (`cache.chunk_images(c)`: the row order
is the chunk index, not arrival order), checksum and atomic writes, and a build interrupted on the cluster
resumes from the chunks already written. Each actor runs `cache.compute_chunk`, the in-process builder's
own function, so the logits equal the in-process build's up to fp16 rounding of results whose fp32 sums
were taken in another order (other thread counts): at most one fp16 ulp.

    teacher.build: cluster   (config)   ->   prepare_data uses `ray_runner`
"""

from __future__ import annotations

import logging

import ray
from ray.util import ActorPool

from orchestrator.teacher.cache import chunk_images, compute_chunk

log = logging.getLogger(__name__)


@ray.remote
class TeacherActor:
    """One teacher per actor (loaded once), answering chunk after chunk."""

    def __init__(
        self,
        arch: str,
        in_chans: int,
        state_dict: dict,
        threads: int,
        use_gpu: bool,
        precision: str = "fp32",
        layout: str = "channels_last",
    ):
        import torch

        from students.teachers import build_resnet
        from trainables.infer import in_precision
        from trainables.layout import memory_format

        torch.set_num_threads(threads)
        self.device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        self.model = build_resnet(arch, in_chans)
        self.model.load_state_dict(state_dict)
        self.model.eval().to(self.device, memory_format=memory_format(layout))  # the driver's choice
        self.model = in_precision(self.model, precision, self.device)  # the driver's choice, on every node

    def chunk(self, images, c: int, rows: slice, spec, pre, batch_size: int):
        return c, compute_chunk(self.model, images, rows, spec, pre, batch_size, self.device)


def ray_runner(
    model,
    arch: str,
    in_chans: int,
    images,
    spec,
    pre,
    batch_size: int,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    actors: int | None = None,
    precision: str = "fp32",
    layout: str = "channels_last",
):
    """A `runner` for `cache.teacher_logits`: yields (chunk, logits) as the actors finish them."""

    def run(missing: list[int]):
        if not missing:
            return
        have = ray.cluster_resources()
        fit = int(have.get("CPU", 0) // cpus_per_actor) if cpus_per_actor else len(missing)
        if gpus_per_actor:
            fit = min(fit, int(have.get("GPU", 0) // gpus_per_actor))
        n = max(1, min(actors or fit, len(missing)))
        sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        sd_ref, img_ref = ray.put(sd), ray.put(images)  # once each, read by every actor
        pool = [
            TeacherActor.options(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor).remote(
                arch, in_chans, sd_ref, max(1, int(cpus_per_actor)), gpus_per_actor > 0, precision, layout
            )
            for _ in range(n)
        ]
        log.info(
            f"teacher logits: {len(missing)} chunks on {n} Ray actors ({cpus_per_actor:g} CPU"
            f"{f', {gpus_per_actor:g} GPU' if gpus_per_actor else ''} each)"
        )

        def chunk(a, c):  # rows decided here, in the driver: the chunk index fixes where the logits go
            return a.chunk.remote(img_ref, c, chunk_images(c, len(images)), spec, pre, batch_size)

        try:  # one chunk in flight per actor; the next goes to whichever finishes first
            yield from ActorPool(pool).map_unordered(chunk, missing)
        finally:
            for a in pool:
                ray.kill(a)

    return run
