"""``nni-latency predict``: the latency of one block, described by flags or given as a Python module."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="device_model.json from `nni-latency profile`")
    parser.add_argument("target", nargs="?", default=None,
                        help="optional path/to/file.py:callable or package.module:callable returning an nn.Module; "
                             "without it, the block is described by --family and the flags below")
    parser.add_argument("--input-shape", default=None, help="N,C,H,W input shape (required with a target)")
    block = parser.add_argument_group("block description (when no target is given)")
    block.add_argument("--family", default="mbconv",
                       help="mbconv, conv_bn_relu, dw_separable, basic, bottleneck, shuffle or skip")
    block.add_argument("--c-in", type=int, default=32)
    block.add_argument("--c-out", type=int, default=32)
    block.add_argument("--resolution", type=int, default=56, help="input height = width")
    block.add_argument("--stride", type=int, default=1)
    block.add_argument("--kernel", type=int, default=3)
    block.add_argument("--expansion", type=int, default=6, help="MBConv expansion ratio")
    block.add_argument("--groups", type=int, default=1)
    block.add_argument("--se", action="store_true", help="add squeeze-excitation (mbconv, basic, bottleneck)")
    block.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the prediction and features as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from ..blocks import BlockSpec
    from ..features import extract_features
    from ..model import LatencyModel

    from ..targets import parse_input_shape

    model = LatencyModel.load(args.model)
    if args.target:
        from ..targets import load_module_target

        if not args.input_shape:
            raise ValueError("a target needs --input-shape N,C,H,W")
        module, name = load_module_target(args.target), args.target
        shape = parse_input_shape(args.input_shape, dims=None)
    else:
        spec = BlockSpec(args.family, args.c_in, args.c_out, args.resolution, args.stride, args.kernel,
                         args.expansion, args.groups, args.se, args.batch)
        module, shape, name = spec.build(), spec.input_shape, spec.key
        if args.input_shape:
            shape = parse_input_shape(args.input_shape, dims=None)
    features = extract_features(module, shape, model.vector_width)
    latency = model.predict_one(features)
    if args.json:
        print(json.dumps({"block": name, "input_shape": list(shape), "predicted_ms": latency,
                          "features": features.as_dict()}, indent=2))
    else:
        print(f"{name} on input {','.join(map(str, shape))}: {latency:.4f} ms predicted "
              f"({features.flops / 1e6:.2f} MFLOPs, {model.kind} model of {model.device.get('name', '?')})")
    return 0
