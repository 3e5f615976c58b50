"""Vision explanations: occlusion saliency, a patch grid blanked one patch per forward pass, all batched.

Saliency of a pixel = the drop of the explained label's probability when the patch covering it is set to
the background (a black pixel after the model's own preprocessing: 0 before normalisation, after `invert`).
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from PIL import Image
from typing_extensions import TypedDict

from modelrepo import scoring
from modelrepo.config import ImagePreprocessing
from service.errors import InvalidInput, PayloadTooLarge
from service.explain import Runner
from service.lean import Answer, Call, encode_json, route
from service.tasks.base import label_of
from service.tasks.request import Counts, int_field, pick, query_int, read_request
from service.tasks.vision import ImageCodec, VisionRequest, decode_base64, read_multipart

if TYPE_CHECKING:
    from service.registry import ModelVersion

PATH = "/v1/vision/explain"
OVERLAY_SIDE = 224  # overlays are upscaled (nearest) to at least this many pixels a side, so a 28x28 map is visible


# --- attribution (pure: the faithfulness benchmark runs these on an ONNX session) ---------------------


def patch_side(height: int, width: int, patch: int, max_passes: int) -> int:
    """The smallest patch side >= `patch` whose grid, plus the unoccluded pass, fits in `max_passes`."""
    while math.ceil(height / patch) * math.ceil(width / patch) + 1 > max_passes:
        patch += 1
    return patch


def occlusion_masks(height: int, width: int, patch: int) -> np.ndarray:
    """(P, H, W) booleans, one non-overlapping square patch each, row by row."""
    masks = []
    for top in range(0, height, patch):
        for left in range(0, width, patch):
            mask = np.zeros((height, width), bool)
            mask[top : top + patch, left : left + patch] = True
            masks.append(mask)
    return np.stack(masks)


def background(spec: ImagePreprocessing) -> np.ndarray:
    """Per-channel value of a background (black, or white when inverted) pixel as the model sees it."""
    fill: np.ndarray = ((0.0 - np.asarray(spec.mean)) / np.asarray(spec.std)).astype(np.float32)
    return fill


def occluded(image: np.ndarray, masks: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """(P, C, H, W): the (C, H, W) image with each mask's pixels set to `fill`."""
    rows: np.ndarray = np.where(masks[:, None], fill[None, :, None, None], image[None]).astype(np.float32)
    return rows


def saliency(base: float, scores: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(H, W): each pixel's mean probability drop over the passes that occluded it."""
    drops = (base - scores)[:, None, None] * masks
    return np.asarray(drops.sum(0) / np.maximum(masks.sum(0), 1), np.float64)


def overlay_png(image: np.ndarray, spec: ImagePreprocessing, heat: np.ndarray) -> str:
    """Base64 PNG: the image as the model saw it (grey) under the positive saliency in red."""
    pixels = image * np.asarray(spec.std)[:, None, None] + np.asarray(spec.mean)[:, None, None]
    if spec.invert:
        pixels = 1.0 - pixels
    grey = np.clip(pixels.mean(0), 0, 1)
    top = heat.max()
    alpha = 0.65 * (np.clip(heat, 0, None) / top if top > 0 else np.zeros_like(heat))
    rgb = np.stack([grey * (1 - alpha) + alpha, grey * (1 - alpha), grey * (1 - alpha)], -1)
    img = Image.fromarray((rgb * 255).round().astype(np.uint8), "RGB")
    scale = max(1, math.ceil(OVERLAY_SIDE / max(img.size)))
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


# --- answers and job ------------------------------------------------------------------------------


class VisionExplanation(TypedDict, total=False):
    """The explained label, its probability, the H x W saliency, the overlay when asked, and its cost."""

    label: str
    score: float
    saliency: list[list[float]]
    overlay: str
    passes: int


class VisionExplainResponse(TypedDict):
    """Explanations in the order of the request's images."""

    model: str
    version: int
    explanations: list[VisionExplanation]


def target_index(labels: list[str], n_classes: int, target: str | None, best: int) -> int:
    """The class to explain: the named label (422 when the model has none such), else the predicted one."""
    if target is None:
        return best
    names = [label_of(labels, i) for i in range(n_classes)]
    if target not in names:
        raise InvalidInput(f"target {target!r} is not a label of this model; its labels are {', '.join(names)}")
    return names.index(target)


@dataclass(frozen=True)
class ExplainImages:
    """A vision explanation job: encoded images, the label to explain and whether to draw overlays."""

    task: ClassVar[str] = "vision"
    default_model: ClassVar[str] = "vision"
    images: list[bytes]
    model: str | None
    version: int | None
    target: str | None
    overlay: bool

    async def explain(self, entry: ModelVersion, run: Runner) -> dict[str, list[VisionExplanation]]:
        """One unoccluded pass and one pass per patch for each image, in one batched run."""
        assert isinstance(entry.codec, ImageCodec) and entry.config is not None
        x = entry.codec.encode(self.images)[entry.codec.input]  # (N, C, H, W)
        spec = entry.codec.spec
        explain = run.settings
        patch = patch_side(spec.height, spec.width, explain.occlusion_patch, explain.max_passes)
        masks = occlusion_masks(spec.height, spec.width, patch)
        fill = background(spec)
        rows = np.concatenate([np.concatenate([img[None], occluded(img, masks, fill)]) for img in x])
        logits = (await run({entry.codec.input: rows}))[entry.config.outputs[0].name]
        probs = scoring.softmax(logits.astype(np.float64)).reshape(len(x), 1 + len(masks), -1)
        answers: list[VisionExplanation] = []
        for img, p in zip(x, probs):
            k = target_index(entry.config.labels, p.shape[-1], self.target, int(np.argmax(p[0])))
            heat = saliency(float(p[0, k]), p[1:, k], masks)
            answer: VisionExplanation = {
                "label": label_of(entry.config.labels, k),
                "score": float(p[0, k]),
                "saliency": heat.round(6).tolist(),
                "passes": 1 + len(masks),
            }
            if self.overlay:
                answer["overlay"] = overlay_png(img, spec, heat)
            answers.append(answer)
        return {"explanations": answers}


def flag(value: str | bool | None, where: str) -> bool | None:
    """A boolean option given as JSON or as a query/form string."""
    if value is None or isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise InvalidInput(f"{where}: Input should be a valid boolean, got {value!r}")


class VisionExplainRequest(VisionRequest):
    """JSON form: base64 images, and optionally the label to explain and whether to draw overlays."""

    target: str | None = None
    overlay: bool | None = None


async def explain_call(call: Call, model: str | None = None, version: int | None = None) -> Answer:
    """Lean handler: the classify body (multipart or JSON), plus `target` and `overlay`."""
    state = call.state
    limits, most = state.settings.limits, state.settings.explain.max_items
    query = call.query()
    content_type = (call.header("content-type") or "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        images, fields = await read_multipart(call, min(most, limits.max_images))
        name = pick(fields.get("model"), query.get("model"))
        number = pick(int_field(fields, "version", "form"), query_int(query, "version"))
        target, overlay = (
            pick(fields.get("target"), query.get("target")),
            flag(pick(fields.get("overlay"), query.get("overlay")), "overlay"),
        )
    else:
        counts: Counts = {"images": (most, "{n} images in one explanation request; the limit is {limit}")}
        body = await call.body()
        req = await call.offload(read_request, VisionExplainRequest, body, counts, size=len(body))
        images = await call.offload(decode_base64, req.images, limits.max_image_bytes, size=len(body))
        name, number = pick(req.model, query.get("model")), pick(req.version, query_int(query, "version"))
        target, overlay = (
            pick(req.target, query.get("target")),
            pick(req.overlay, flag(query.get("overlay"), "overlay")),
        )
    if len(images) > most:
        raise PayloadTooLarge(f"{len(images)} images in one explanation request; the limit is {most}")
    job = ExplainImages(images, pick(model, name), pick(version, number), target, bool(overlay))
    return Answer(encode_json(await state.dataplane.explain(job)))


ROUTES = [route(PATH, explain_call)]
