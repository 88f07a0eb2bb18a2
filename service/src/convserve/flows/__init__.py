"""The one orchestration layer: a parsed request -> a result, for convolve, explain and layers.

It ties the numerical core (:mod:`convserve.conv`) and the pixel codecs (:mod:`convserve.imaging`)
together and checks every :class:`~convserve.limits.Limits`; it imports no FastAPI. The routers in
:mod:`convserve.api.routes` parse HTTP into plain values, call one function here in a worker
thread and turn the :class:`Outcome` into a response, so this package is tested without HTTP.

- :mod:`.context`: what a flow may use (:class:`FlowContext`: settings, limits, engines, the
  encoder pool and metric callbacks);
- :mod:`.inputs`: uploaded bytes, a JSON array or a base64 image -> float32 (C, H, W);
- :mod:`.kernels`: a JSON kernel or a preset -> an OIHW weight, bias, groups and the defaults
  that go with each source;
- :mod:`.cost`: parameters, MACs, FLOPs and bytes of one layer;
- :mod:`.render`: float32 maps -> the answer's formats;
- :mod:`.convolve`, :mod:`.explain`, :mod:`.layers`: the three requests;
- :mod:`.models`: feature maps, explanations and kernels of uploaded ONNX models (the models
  themselves: :mod:`convserve.models`).
"""

from convserve.flows.context import FlowContext
from convserve.flows.convolve import PreparedConv, convolve, prepare_convolution
from convserve.flows.explain import explain
from convserve.flows.inputs import Source, decode_source
from convserve.flows.layers import PreparedStack, run_layers
from convserve.flows.render import EncodedResult, Outcome

__all__ = [
    "EncodedResult",
    "FlowContext",
    "Outcome",
    "PreparedConv",
    "PreparedStack",
    "Source",
    "convolve",
    "decode_source",
    "explain",
    "prepare_convolution",
    "run_layers",
]
