"""Examples of the model endpoints' answers, for the OpenAPI document.

Real answers of this service for the sample network (``POST /v1/models/sample``, the Keras
reference CNN) and the cat photo of ``tests/data/chelsea.png`` stretched to 150x150: the layer
table, the list, the sample's status, conv1's features, conv1's kernel, and the explanation of
conv1's output (0, 10, 20). Cut short to stay readable: two of conv1's 16 feature channels,
their PNGs, and the kernel's first two of 16 filters and biases. Numbers are rounded to 4
decimals. ``tests/api/test_openapi.py`` validates each against its schema.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MODEL_EXAMPLES"]

MODEL_EXAMPLES: dict[str, dict[str, Any]] = {
    "ModelInfo": {
        "id": "de583471b31f841960ecfa41fe4b60f6",
        "filename": "sample-keras-cnn.onnx",
        "bytes": 37979665,
        "created": "2026-12-02T06:26:07Z",
        "producer": "convserve sample",
        "opset": 17,
        "input_size": None,
        "inputs": [
            {
                "name": "input",
                "shape": [1, 3, 150, 150],
                "layout": "NCHW",
                "channels": 3,
                "size": [150, 150],
            }
        ],
        "total_params": 9494561,
        "total_macs": 64128256,
        "layers": [
            {
                "index": 0,
                "name": "conv1",
                "op": "Conv",
                "node": "/conv1/Conv",
                "output_shape": [16, 148, 148],
                "layout": "NCHW",
                "params": 448,
                "macs": 9462528,
            },
            {
                "index": 1,
                "name": "relu1",
                "op": "Relu",
                "node": "/relu1/Relu",
                "output_shape": [16, 148, 148],
                "layout": "NCHW",
                "params": 0,
                "macs": 0,
            },
            {
                "index": 2,
                "name": "pool1",
                "op": "MaxPool",
                "node": "/pool1/MaxPool",
                "output_shape": [16, 74, 74],
                "layout": "NCHW",
                "params": 0,
                "macs": 0,
            },
            {
                "index": 3,
                "name": "conv2",
                "op": "Conv",
                "node": "/conv2/Conv",
                "output_shape": [32, 72, 72],
                "layout": "NCHW",
                "params": 4640,
                "macs": 23887872,
            },
            {
                "index": 4,
                "name": "relu2",
                "op": "Relu",
                "node": "/relu2/Relu",
                "output_shape": [32, 72, 72],
                "layout": "NCHW",
                "params": 0,
                "macs": 0,
            },
            {
                "index": 5,
                "name": "pool2",
                "op": "MaxPool",
                "node": "/pool2/MaxPool",
                "output_shape": [32, 36, 36],
                "layout": "NCHW",
                "params": 0,
                "macs": 0,
            },
            {
                "index": 6,
                "name": "conv3",
                "op": "Conv",
                "node": "/conv3/Conv",
                "output_shape": [64, 34, 34],
                "layout": "NCHW",
                "params": 18496,
                "macs": 21307392,
            },
            {
                "index": 7,
                "name": "relu3",
                "op": "Relu",
                "node": "/relu3/Relu",
                "output_shape": [64, 34, 34],
                "layout": "NCHW",
                "params": 0,
                "macs": 0,
            },
            {
                "index": 8,
                "name": "pool3",
                "op": "MaxPool",
                "node": "/pool3/MaxPool",
                "output_shape": [64, 17, 17],
                "layout": "NCHW",
                "params": 0,
                "macs": 0,
            },
            {
                "index": 9,
                "name": "flatten",
                "op": "Flatten",
                "node": "/flatten/Flatten",
                "output_shape": [18496],
                "layout": None,
                "params": 0,
                "macs": 0,
            },
            {
                "index": 10,
                "name": "dense1",
                "op": "Gemm",
                "node": "/dense1/Gemm",
                "output_shape": [512],
                "layout": None,
                "params": 9470464,
                "macs": 9469952,
            },
            {
                "index": 11,
                "name": "relu4",
                "op": "Relu",
                "node": "/relu4/Relu",
                "output_shape": [512],
                "layout": None,
                "params": 0,
                "macs": 0,
            },
            {
                "index": 12,
                "name": "dense2",
                "op": "Gemm",
                "node": "/dense2/Gemm",
                "output_shape": [1],
                "layout": None,
                "params": 513,
                "macs": 512,
            },
            {
                "index": 13,
                "name": "probability",
                "op": "Sigmoid",
                "node": "/sigmoid/Sigmoid",
                "output_shape": [1],
                "layout": None,
                "params": 0,
                "macs": 0,
            },
        ],
    },
    "ModelList": {
        "models": [
            {
                "id": "de583471b31f841960ecfa41fe4b60f6",
                "filename": "sample-keras-cnn.onnx",
                "bytes": 37979665,
                "created": "2026-12-02T06:26:07Z",
                "producer": "convserve sample",
                "opset": 17,
                "input_size": None,
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, 3, 150, 150],
                        "layout": "NCHW",
                        "channels": 3,
                        "size": [150, 150],
                    }
                ],
                "total_params": 9494561,
                "total_macs": 64128256,
            }
        ]
    },
    "SampleModelStatus": {
        "id": "de583471b31f841960ecfa41fe4b60f6",
        "stored": True,
        "store_at_start": False,
    },
    "FeaturesResponse": {
        "model": "de583471b31f841960ecfa41fe4b60f6",
        "engine": "onnxruntime",
        "device": "cpu",
        "provider": "CPUExecutionProvider",
        "preprocess": {
            "name": "custom",
            "resize": "stretch",
            "scale": 1.0,
            "mean": [0.0],
            "std": [1.0],
            "channel_order": "RGB",
            "input_shape": [3, 300, 451],
            "model_input_shape": [1, 3, 150, 150],
            "layout": "NCHW",
        },
        "input": {
            "shape": [3, 300, 451],
            "format": "PNG",
            "mode": "RGB",
            "bit_depth": 8,
            "channels": ["R", "G", "B"],
        },
        "normalize": "minmax",
        "layers": [
            {
                "index": 0,
                "name": "conv1",
                "op": "Conv",
                "shape": [16, 148, 148],
                "layout": "NCHW",
                "channels": [
                    {
                        "index": 0,
                        "min": -0.1691,
                        "max": 0.1543,
                        "mean": -0.0,
                        "png_base64": "iVBORw0KGgoAAAANSUhEUgAAAJQAAACUCAAAAABQ...",
                    },
                    {
                        "index": 1,
                        "min": -0.2058,
                        "max": 0.1737,
                        "mean": 0.0,
                        "png_base64": "iVBORw0KGgoAAAANSUhEUgAAAJQAAACUCAAAAABQ...",
                    },
                ],
            }
        ],
        "timing_ms": {"decode": 3.211, "preprocess": 1.833, "run": 223.643, "encode": 13.122},
    },
    "ModelKernelResponse": {
        "layer": {
            "index": 0,
            "name": "conv1",
            "op": "Conv",
            "node": "/conv1/Conv",
            "output_shape": [16, 148, 148],
            "layout": "NCHW",
            "params": 448,
            "macs": 9462528,
        },
        "input": "input",
        "weight": [
            [
                [
                    [-0.0489, 0.0978, -0.0489],
                    [-0.0517, 0.1034, -0.0517],
                    [-0.0489, 0.0978, -0.0489],
                ],
                [[-0.096, 0.192, -0.096], [-0.1015, 0.203, -0.1015], [-0.096, 0.192, -0.096]],
                [
                    [-0.0186, 0.0373, -0.0186],
                    [-0.0197, 0.0394, -0.0197],
                    [-0.0186, 0.0373, -0.0186],
                ],
            ],
            [
                [[0.0015, 0.0946, -0.1005], [-0.049, 0.1068, -0.049], [-0.1005, 0.0946, 0.0015]],
                [[0.003, 0.1856, -0.1974], [-0.0961, 0.2097, -0.0961], [-0.1974, 0.1856, 0.003]],
                [[0.0006, 0.0361, -0.0383], [-0.0187, 0.0407, -0.0187], [-0.0383, 0.0361, 0.0006]],
            ],
        ],
        "bias": [0.0, 0.0],
        "stride": [1, 1],
        "padding": [0, 0, 0, 0],
        "dilation": [1, 1],
        "groups": 1,
    },
    "ModelExplainResponse": {
        "model": "de583471b31f841960ecfa41fe4b60f6",
        "engine": "onnxruntime",
        "device": "cpu",
        "provider": "CPUExecutionProvider",
        "layer": {
            "index": 0,
            "name": "conv1",
            "op": "Conv",
            "node": "/conv1/Conv",
            "output_shape": [16, 148, 148],
            "layout": "NCHW",
            "params": 448,
            "macs": 9462528,
        },
        "value": 0.0051,
        "at": {"channel": 0, "y": 10, "x": 20},
        "output_shape": [16, 148, 148],
        "window_origin": {"y": 10, "x": 20},
        "rows": [10, 11, 12],
        "cols": [20, 21, 22],
        "bias": 0.0,
        "total": 0.0051,
        "terms": [
            {
                "input_channel": 0,
                "window": [
                    [0.4893, 0.5192, 0.5429],
                    [0.491, 0.5188, 0.5369],
                    [0.475, 0.5171, 0.5311],
                ],
                "in_padding": [[False, False, False], [False, False, False], [False, False, False]],
                "kernel": [
                    [-0.0489, 0.0978, -0.0489],
                    [-0.0517, 0.1034, -0.0517],
                    [-0.0489, 0.0978, -0.0489],
                ],
                "products": [
                    [-0.0239, 0.0508, -0.0265],
                    [-0.0254, 0.0536, -0.0278],
                    [-0.0232, 0.0506, -0.026],
                ],
                "sum": 0.0022,
            },
            {
                "input_channel": 1,
                "window": [
                    [0.267, 0.2954, 0.3235],
                    [0.2732, 0.2973, 0.3219],
                    [0.2649, 0.3025, 0.3173],
                ],
                "in_padding": [[False, False, False], [False, False, False], [False, False, False]],
                "kernel": [
                    [-0.096, 0.192, -0.096],
                    [-0.1015, 0.203, -0.1015],
                    [-0.096, 0.192, -0.096],
                ],
                "products": [
                    [-0.0256, 0.0567, -0.0311],
                    [-0.0277, 0.0603, -0.0327],
                    [-0.0254, 0.0581, -0.0305],
                ],
                "sum": 0.0022,
            },
            {
                "input_channel": 2,
                "window": [
                    [0.192, 0.2262, 0.2481],
                    [0.1963, 0.2252, 0.2474],
                    [0.1837, 0.2223, 0.2421],
                ],
                "in_padding": [[False, False, False], [False, False, False], [False, False, False]],
                "kernel": [
                    [-0.0186, 0.0373, -0.0186],
                    [-0.0197, 0.0394, -0.0197],
                    [-0.0186, 0.0373, -0.0186],
                ],
                "products": [
                    [-0.0036, 0.0084, -0.0046],
                    [-0.0039, 0.0089, -0.0049],
                    [-0.0034, 0.0083, -0.0045],
                ],
                "sum": 0.0007,
            },
        ],
        "expression": "(0.489257×(-0.0489021) + 0.519226×0.0978042 + "
        "0.542901×(-0.0489021) + 0.490953×(-0.0516958) + "
        "0.51883×0.103392 + 0.536886×(-0.0516958) + "
        "0.475013×(-0.0489021) + 0.517121×0.0978042 + "
        "0.531053×(-0.0489021)) + (0.266977×(-0.0960051) + "
        "0.295416×0.19201 + 0.323465×(-0.0960051) + "
        "0.273188×(-0.10149) + 0.297294×0.202979 + "
        "0.321863×(-0.10149) + 0.264866×(-0.0960051) + "
        "0.302463×0.19201 + 0.317296×(-0.0960051)) + "
        "(0.192017×(-0.018645) + 0.226167×0.0372899 + "
        "0.248111×(-0.018645) + 0.196276×(-0.0197101) + "
        "0.225186×0.0394202 + 0.247438×(-0.0197101) + "
        "0.183731×(-0.018645) + 0.222256×0.0372899 + "
        "0.242118×(-0.018645)) + 0 = 0.00507595",
        "padding": [0, 0, 0, 0],
        "stride": [1, 1],
        "dilation": [1, 1],
        "groups": 1,
        "preprocess": {
            "name": "custom",
            "resize": "stretch",
            "scale": 1.0,
            "mean": [0.0],
            "std": [1.0],
            "channel_order": "RGB",
            "input_shape": [3, 300, 451],
            "model_input_shape": [1, 3, 150, 150],
            "layout": "NCHW",
        },
        "timing_ms": {"total": 65.277},
    },
}
