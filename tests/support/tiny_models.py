"""Small but real ONNX models and a model repository on disk, for the service tests.

Built with `onnx.helper` in milliseconds: same tensor names, dtypes and dynamic axes as the default
models, random (seeded) weights. The text model mean-pools embeddings under the attention mask, so
padding mistakes change its output; the autoencoders export `score` as the per-row mean squared
error, like the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

OPSET = 17
VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "free",
    "win",
    "cash",
    "now",
    "call",
    "me",
    "hello",
    "ok",
    "see",
    "you",
    "later",
    "prize",
]
SERIES_WINDOW = 8
N_FEATURES = 21


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def vision_model(path: Path, seed: int = 0) -> None:
    """image FP32 [B,1,28,28] -> logits FP32 [B,10] (flatten + dense)."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "vision",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [
            _init("W", rng.normal(0, 0.05, (784, 10)).astype(np.float32)),
            _init("b", rng.normal(0, 0.1, 10).astype(np.float32)),
        ],
    )
    _save(graph, path)


COLOUR_HEIGHT, COLOUR_WIDTH, COLOUR_CLASSES = 4, 6, 5


def colour_model(path: Path, seed: int = 4) -> None:
    """image FP32 [B,3,4,6] -> logits FP32 [B,5]: a dense layer over every pixel.

    Any layout mistake changes the answer.

    Height differs from width on purpose: an (H, W) / (W, H) mix-up cannot hide behind a square.
    """
    rng = np.random.default_rng(seed)
    size = 3 * COLOUR_HEIGHT * COLOUR_WIDTH
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "colour",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, COLOUR_HEIGHT, COLOUR_WIDTH])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", COLOUR_CLASSES])],
        [
            _init("W", rng.normal(0, 1.0, (size, COLOUR_CLASSES)).astype(np.float32)),
            _init("b", rng.normal(0, 0.1, COLOUR_CLASSES).astype(np.float32)),
        ],
    )
    _save(graph, path)


def text_model(path: Path, seed: int = 1) -> None:
    """input_ids, attention_mask INT64 [B,T] -> logits FP32 [B,2] (masked mean of embeddings + dense)."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["emb"]),  # (B, T, 8)
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),  # (B, T, 1)
        helper.make_node("Mul", ["emb", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),  # (B, 8)
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),  # (B, 1)
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [
            _init("E", rng.normal(0, 1, (len(VOCAB), 8)).astype(np.float32)),
            _init("W", rng.normal(0, 1, (8, 2)).astype(np.float32)),
            _init("b", np.zeros(2, np.float32)),
            _init("axis1", np.array([1], np.int64)),
            _init("axis2", np.array([2], np.int64)),
        ],
    )
    _save(graph, path)


def _autoencoder_nodes(x: str, width: int, rng: np.random.Generator) -> tuple[list, list]:
    nodes = [
        helper.make_node("MatMul", [x, "W1"], ["h0"]),
        helper.make_node("Relu", ["h0"], ["h"]),
        helper.make_node("MatMul", ["h", "W2"], ["rec"]),
        helper.make_node("Sub", ["rec", x], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["score"], axes=[1], keepdims=0),
    ]
    inits = [
        _init("W1", rng.normal(0, 0.3, (width, 4)).astype(np.float32)),
        _init("W2", rng.normal(0, 0.3, (4, width)).astype(np.float32)),
    ]
    return nodes, inits


def tabular_model(path: Path, seed: int = 2) -> None:
    """features FP32 [B,21] -> reconstruction FP32 [B,21], score FP32 [B]."""
    nodes, inits = _autoencoder_nodes("features", N_FEATURES, np.random.default_rng(seed))
    nodes.append(helper.make_node("Identity", ["rec"], ["reconstruction"]))
    graph = helper.make_graph(
        nodes,
        "tabular",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", N_FEATURES])],
        [
            helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, ["batch", N_FEATURES]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"]),
        ],
        inits,
    )
    _save(graph, path)


def series_model(path: Path, seed: int = 3) -> None:
    """window FP32 [B,W,1] -> reconstruction FP32 [B,W,1], score FP32 [B]."""
    w = SERIES_WINDOW
    nodes, inits = _autoencoder_nodes("flat", w, np.random.default_rng(seed))
    nodes = [helper.make_node("Reshape", ["window", "flat_shape"], ["flat"]), *nodes]
    nodes.append(helper.make_node("Reshape", ["rec", "out_shape"], ["reconstruction"]))
    inits += [_init("flat_shape", np.array([-1, w], np.int64)), _init("out_shape", np.array([-1, w, 1], np.int64))]
    graph = helper.make_graph(
        nodes,
        "series",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["batch", w, 1])],
        [
            helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, ["batch", w, 1]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"]),
        ],
        inits,
    )
    _save(graph, path)


def tokenizer(path: Path) -> None:
    """A word-level tokenizer with [PAD]=0, [UNK]=1, [CLS]=2 prepended to every text."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A", special_tokens=[("[CLS]", 2)])
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]"])
    tok.save(str(path))


def _tensor(name: str, datatype: str, dims: list[int]) -> dict:
    return {"name": name, "datatype": datatype, "dims": dims}


CONFIGS = {
    "digits": {
        "task": "vision",
        "inputs": [_tensor("image", "FP32", [-1, 1, 28, 28])],
        "outputs": [_tensor("logits", "FP32", [-1, 10])],
        "labels": [str(i) for i in range(10)],
        "preprocessing": {"kind": "image", "height": 28, "width": 28, "channels": 1, "mean": [0.1307], "std": [0.3081]},
    },
    "spam": {
        "task": "text",
        "inputs": [_tensor("input_ids", "INT64", [-1, -1]), _tensor("attention_mask", "INT64", [-1, -1])],
        "outputs": [_tensor("logits", "FP32", [-1, 2])],
        "labels": ["ham", "spam"],
        "preprocessing": {"kind": "text", "max_length": 6},
    },
    "thyroid": {
        "task": "anomaly",
        "inputs": [_tensor("features", "FP32", [-1, N_FEATURES])],
        "outputs": [_tensor("reconstruction", "FP32", [-1, N_FEATURES]), _tensor("score", "FP32", [-1])],
        "preprocessing": {
            "kind": "tabular",
            "features": [f"f{i}" for i in range(N_FEATURES)],
            "mean": [0.5] * N_FEATURES,
            "scale": [2.0] * (N_FEATURES - 1) + [0.0],
        },
        "anomaly": {"threshold": 0.5},
    },
    "temperature": {
        "task": "anomaly",
        "inputs": [_tensor("window", "FP32", [-1, SERIES_WINDOW, 1])],
        "outputs": [_tensor("reconstruction", "FP32", [-1, SERIES_WINDOW, 1]), _tensor("score", "FP32", [-1])],
        "preprocessing": {"kind": "series", "window": SERIES_WINDOW, "stride": 2, "mean": 10.0, "std": 2.0},
        "anomaly": {"threshold": 1.0},
    },
    # Not in build_repository: served only by the tests that ask for it.
    "colour": {
        "task": "vision",
        "inputs": [_tensor("image", "FP32", [-1, 3, COLOUR_HEIGHT, COLOUR_WIDTH])],
        "outputs": [_tensor("logits", "FP32", [-1, COLOUR_CLASSES])],
        "labels": [f"c{i}" for i in range(COLOUR_CLASSES)],
        "preprocessing": {
            "kind": "image",
            "height": COLOUR_HEIGHT,
            "width": COLOUR_WIDTH,
            "channels": 3,
            "mean": [0.1, 0.5, 0.9],
            "std": [0.2, 0.3, 0.4],
        },
    },
}
BUILDERS = {
    "digits": vision_model,
    "spam": text_model,
    "thyroid": tabular_model,
    "temperature": series_model,
    "colour": colour_model,
}
REPOSITORY_KINDS = ("digits", "spam", "thyroid", "temperature")


def add_model(root: Path, name: str, kind: str, versions: tuple[int, ...] = (1,), **overrides) -> Path:
    """Write `root/<name>/config.json` and one folder per version with model.onnx, snapshot and artefacts."""
    config = {"name": name, **json.loads(json.dumps(CONFIGS[kind])), **overrides}
    model_dir = root / name
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(config, indent=2))
    for v in versions:
        vdir = model_dir / str(v)
        BUILDERS[kind](vdir / "model.onnx", seed=v)
        (vdir / "config.json").write_text(json.dumps(config, indent=2))
        if kind == "spam":
            tokenizer(vdir / "tokenizer.json")
    return model_dir


def build_repository(root: Path) -> Path:
    """One model per task, under the names the tests use."""
    for kind in REPOSITORY_KINDS:
        add_model(root, kind, kind)
    return root
