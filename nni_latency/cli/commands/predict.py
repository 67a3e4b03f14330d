"""``nni-latency predict``: the latency of one block, described by flags or given as a Python module."""

from __future__ import annotations

import argparse

from ...errors import InvalidInput
from . import INPUT_SHAPE_HELP, TARGET_HELP

# The block flags that count something: each must be at least 1.
_POSITIVE_FLAGS = ("c_in", "c_out", "resolution", "stride", "kernel", "expansion", "groups", "batch")
_POOLS = ("maxpool", "avgpool")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="device_model.json from `nni-latency profile`")
    parser.add_argument("target", nargs="?", default=None,
                        help=f"optional: {TARGET_HELP}; without it, the block is described by --family and the "
                             "flags below")
    parser.add_argument("--input-shape", default=None, metavar="SHAPE",
                        help=f"{INPUT_SHAPE_HELP}; without a target it replaces the block's own input")
    block = parser.add_argument_group("block description (when no target is given)")
    block.add_argument("--family", default="mbconv",
                       help="block family: mbconv, conv_bn_relu, dw_separable, basic, bottleneck, shuffle, skip, "
                            "classifier, maxpool, avgpool, ... (nni_latency.suite.blocks.FAMILIES; a wrong name lists them)")
    block.add_argument("--c-in", type=int, default=32, metavar="C", help="input channels")
    block.add_argument("--c-out", type=int, default=32, metavar="C", help="output channels")
    block.add_argument("--resolution", type=int, default=56, metavar="PX", help="input height = width")
    block.add_argument("--stride", type=int, default=1, help="stride of the block (2 halves the resolution)")
    block.add_argument("--kernel", type=int, default=3, help="kernel size of the spatial convolution or pooling")
    block.add_argument("--expansion", type=int, default=6, help="MBConv expansion ratio")
    block.add_argument("--groups", type=int, default=1, help="groups of the 1x1 / dense convolutions")
    block.add_argument("--se", action="store_true", help="add squeeze-excitation (mbconv, basic, bottleneck)")
    block.add_argument("--batch", type=int, default=1, help="batch size")
    parser.add_argument("--json", action="store_true", help="print the prediction and features as JSON")


def _check_block_flags(args: argparse.Namespace) -> None:
    """Flags that cannot describe a block, named before anything is built."""
    from . import check_positive

    for name in _POSITIVE_FLAGS:
        check_positive(getattr(args, name), f"--{name.replace('_', '-')}")
    for flag, channels in (("--c-in", args.c_in), ("--c-out", args.c_out)):
        if channels % args.groups:
            raise InvalidInput(f"--groups {args.groups} does not divide {flag} {channels}; give channel counts that "
                             "are multiples of --groups")
    if args.kernel % 2 == 0 and args.family not in _POOLS:
        raise InvalidInput(f"--kernel {args.kernel} is even; {args.family} pads by kernel // 2, which needs an odd "
                         "kernel (1, 3, 5, 7)")
    if args.family == "shuffle" and args.stride == 1 and (args.c_in != args.c_out or args.c_in % 2):
        raise InvalidInput(f"--family shuffle at stride 1 splits and keeps its channels: give --c-out equal to --c-in "
                         f"and even, got {args.c_in} -> {args.c_out}")


def run(args: argparse.Namespace) -> int:
    import functools
    import json

    from ...count.inputs import format_inputs
    from ...model.model import LatencyModel
    from ...suite.blocks import BlockSpec
    from ..targets import input_hint, load_network, parse_input_shape

    model = LatencyModel.load(args.model)
    if args.target:
        (module, shape), name = load_network(args.target, args.input_shape), args.target
        hint = input_hint(module, args.target)
    else:
        _check_block_flags(args)
        spec = BlockSpec(args.family, args.c_in, args.c_out, args.resolution, args.stride, args.kernel,
                         args.expansion, args.groups, args.se, args.batch)
        module, name = functools.partial(spec.build, seed=0), spec.key
        hint = f"the block takes {','.join(map(str, spec.input_shape))} (N,C,H,W from --batch, --c-in, --resolution)"
        shape = parse_input_shape(args.input_shape, dims=None) if args.input_shape else spec.input_shape
    try:
        features = model.count(module, shape)  # the one path: the same features and warnings as predict_module
    except ValueError as error:
        raise InvalidInput(f"{error}; {hint}" if hint and "does not fit" in str(error) else str(error)) from None
    latency = model.predict_one(features)
    if args.json:
        print(json.dumps({"block": name, "input_shape": [list(s) if isinstance(s, tuple) else s for s in shape],
                          "input": format_inputs(shape), "predicted_ms": latency, "features": features.as_dict()},
                         indent=2))
    else:
        print(f"{name} on input {format_inputs(shape)}: {latency:.4f} ms predicted "
              f"({features.flops / 1e6:.2f} MFLOPs, {model.kind} model of {model.device.get('name', 'an unknown device')})")
    return 0
