"""Activations whose calibration histogram follows exactly from another activation's, so calibration
neither exposes nor bins them.

- Shape-only ops (Identity, Reshape, Flatten, Squeeze, Unsqueeze, Transpose) move values without
  changing them: every batch has the same values, so the same max |x|, range and counts.
- A nearest-neighbour Resize (or Upsample) by whole-number scales that picks floor(o / scale), as
  PyTorch's ``nn.Upsample(scale_factor=2)`` exports (YOLO and FPN necks, the demo detector):
  every input value appears exactly prod(scales) times, so the same range and that many times the
  counts.
- A zero-constant Pad with no negative pads adds only zeros: every batch has its input's max |x|
  (so the same range, grown at the same batches) and its input's counts plus the added zeros in
  bin 0. Merging bins in pairs keeps bin 0 in bin 0, so the final histogram is the input's with
  the zeros of every batch added to bin 0. Zero Pads before depthwise convolutions are about a fifth
  of an EfficientNet's activation values.

Anything else (another Pad mode or value, pads computed from activations, a Pad of a tensor that
is itself derived, whose shape calibration does not see, an op outside the standard ONNX domain,
a source listed after the node that reads it) is measured as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import onnx

from trtq.calib.histogram import TrtHistogram
from trtq.errors import TrtqError
from trtq.model.constants import constant_values
from trtq.model.edit import attributes as node_attributes

SAME_VALUES = frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose"})
_READ_INPUTS = frozenset({"Pad", "Resize", "Upsample"})
"""Ops whose constant inputs (pads, value, scales) decide whether they derive."""


@dataclass(frozen=True)
class DerivedTensor:
    name: str
    source: str
    """The activation it derives from: measured, or itself derived (never for a Pad, which needs its
    source's shape from every batch)."""
    pads: tuple[int, ...] | None = None
    """A zero Pad's pads in ONNX order (all begins, then all ends, one per source axis);
    None for the same values as the source."""
    repeats: int = 1
    """How often each source value appears (a nearest Resize by whole-number scales)."""

    def added_zeros(self, source_shape: tuple[int, ...]) -> int:
        """Zeros the Pad adds to a batch whose source has this shape."""
        if self.pads is None:
            return 0
        rank = len(source_shape)
        if len(self.pads) != 2 * rank:
            raise TrtqError(
                f"the Pad that makes '{self.name}' has {len(self.pads)} pads for its rank-{rank} input "
                f"'{self.source}' (ONNX wants {2 * rank}); check the model"
            )
        ends = zip(source_shape, self.pads[:rank], self.pads[rank:], strict=True)
        padded = math.prod(dim + begin + end for dim, begin, end in ends)
        return padded - math.prod(source_shape)

    def histogram(self, source: TrtHistogram, added_zeros: int) -> TrtHistogram:
        """This tensor's histogram from its source's final one and the zeros added over all batches."""
        counts = source.counts * self.repeats
        counts[0] += added_zeros
        return replace(source, counts=counts)


def derived_tensors(model: onnx.ModelProto, activations: list[str]) -> dict[str, DerivedTensor]:
    """Which of ``activations`` (calibrated tensors, graph order) derive from another one."""
    graph = model.graph
    wanted = set(activations)
    read = [node for node in graph.node if node.op_type in _READ_INPUTS and node.output[0] in wanted]
    values = constant_values(model, {name for node in read for name in node.input[1:] if name})
    derived: dict[str, DerivedTensor] = {}
    # Tensors made before the node at hand: a source listed later (a graph out of ONNX's
    # topological order, which ONNX Runtime still runs) is measured, never derived from.
    made = {value.name for value in graph.input}
    for node in graph.node:
        source = node.input[0] if node.input else ""
        output = node.output[0] if node.output else ""
        standard = node.domain in ("", "ai.onnx")  # a custom domain's Pad or Transpose may do anything
        derivable = standard and output in wanted and source in wanted and source in made
        made.update(node.output)
        if not derivable:
            continue
        if node.op_type in SAME_VALUES:
            derived[output] = DerivedTensor(output, source)
        elif node.op_type == "Pad" and source not in derived:
            pads = _zero_pads(node, values)
            if pads is not None:
                derived[output] = DerivedTensor(output, source, pads)
        elif node.op_type in ("Resize", "Upsample"):
            repeats = _nearest_repeats(node, values)
            if repeats is not None:
                derived[output] = DerivedTensor(output, source, repeats=repeats)
    return derived


def _nearest_repeats(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> int | None:
    """prod(scales) for a nearest Resize/Upsample by whole-number constant scales that takes input
    index floor(o / scale) (asymmetric coordinates, floor rounding; Upsample and opset-10 Resize
    always do); None otherwise."""
    attributes = node_attributes(node)
    if attributes.get("mode", b"nearest") != b"nearest" or "axes" in attributes:
        return None
    if node.op_type == "Resize" and len(node.input) > 2:  # opset 11 on: roi, scales, sizes
        if attributes.get("coordinate_transformation_mode", b"half_pixel") != b"asymmetric":
            return None
        if attributes.get("nearest_mode", b"round_prefer_floor") != b"floor":
            return None
        if len(node.input) > 3 and node.input[3]:  # sizes: the scales depend on the input's shape
            return None
        scales_name = node.input[2]
    elif "scales" in attributes:  # Upsample before opset 9
        return _whole_product(np.asarray(attributes["scales"], dtype=np.float64))
    else:
        scales_name = node.input[1] if len(node.input) > 1 else ""
    if scales_name not in values:
        return None
    return _whole_product(values[scales_name].astype(np.float64).ravel())


def _whole_product(scales: np.ndarray) -> int | None:
    """prod(scales) when every scale is a whole number >= 1."""
    if scales.size == 0 or not np.all((scales >= 1) & (scales == np.floor(scales))):
        return None
    return int(np.prod(scales.astype(np.int64)))


def _zero_pads(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> tuple[int, ...] | None:
    """The pads of a Pad that only adds zeros (constant mode, value 0, every pad >= 0, all axes)."""
    attributes = node_attributes(node)
    if attributes.get("mode", b"constant") != b"constant":
        return None
    inputs = list(node.input) + [""] * (4 - len(node.input))
    if "pads" in attributes:  # opset < 11: pads and value are attributes
        pads, value = attributes["pads"], attributes.get("value", 0.0)
    else:
        if inputs[3] or inputs[1] not in values:  # an axes input, or pads that are not constant
            return None
        pads = values[inputs[1]].ravel().tolist()
        if not inputs[2]:
            value = 0.0
        elif inputs[2] in values and values[inputs[2]].size == 1:
            value = float(values[inputs[2]].ravel()[0])
        else:
            return None
    if value != 0.0 or any(int(pad) < 0 for pad in pads):
        return None
    return tuple(int(pad) for pad in pads)
