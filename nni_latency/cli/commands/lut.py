"""``nni-latency lut``: the predicted (and optionally measured) per-layer lookup table of a search space."""

from __future__ import annotations

import argparse

from ...errors import InvalidInput


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Predict the latency of every candidate of every searched layer of a space with a device model and "
        "write it as lut.json (ms, with shapes) and as NNI 2.x FBNet's lut.txt (one record per line: op_name, "
        "op_data_shape = (input_w, input_h, C_in, C_out, stride), op_dtype, op_latency in microseconds). "
        "--measure also times every candidate for real and writes lut_measured.txt, to compare.")
    parser.add_argument("--model", required=True, metavar="FILE", help="device_model.json from `nni-latency profile`")
    parser.add_argument("--space", required=True, metavar="NAME",
                        help="fbnet (the FBNet paper space, nni_latency.spaces.FBNetSpace) or a space of NNI's hub "
                             "whose latency is a sum of tables: proxylessnas, mobilenetv3, shufflenet, autoformer, "
                             "darts, pnas, nasbench201")
    parser.add_argument("--space-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="constructor argument of the space, repeatable, e.g. --space-arg width_mult=0.5 "
                             "--space-arg depth_mult=0.5 (values are Python literals)")
    parser.add_argument("--input-size", type=int, default=224, metavar="PIXELS",
                        help="input height = width; fbnet also derives its strides from it")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size of the input (unset: the batch the device model was profiled at)")
    parser.add_argument("--output-dir", required=True, metavar="DIR", help="where lut.json and lut.txt go")
    parser.add_argument("--measure", action="store_true",
                        help="also measure every candidate (measure_latency, the model's protocol) and report "
                             "how long the predicted and the measured table took")
    parser.add_argument("--device", default=None, help="device for --measure (unset: the model's)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for --measure (unset: the model's)")


def _space_kwargs(items: list[str]) -> dict:
    import ast

    kwargs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--space-arg {item!r} is not KEY=VALUE, e.g. width_mult=0.5")
        try:
            kwargs[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = value.strip()
    return kwargs


def _tabled_space(name: str, input_size: int, kwargs: dict):
    """``spaces.hub.build_space``, for a space with lookup tables only; ``kwargs`` named as --space-arg in errors."""
    from ...spaces.hub import build_space as build
    from ...spaces.hub import check_arguments, space_entry

    entry = space_entry(name)
    if not entry.tables:
        raise InvalidInput(f"{name} has no lookup table: {entry.why}; predict its architectures with "
                         "nni_latency.nas.FrozenLatencyProfiler")
    check_arguments(name, kwargs, where="--space-arg")
    return build(name, input_size, **kwargs)


def run(args: argparse.Namespace) -> int:
    import time

    from ...files.fileio import ensure_writable_dir
    from ...files.outputs import Output, check_outputs, keep_previous
    from ...measure.allocator import apply_allocator_policy
    from ...model.model import LatencyModel
    from ...nas.lut import measure_rows, predicted_rows, write_lut_json, write_lut_txt
    from ...nas.profiler import LatencyProfiler
    from ...runtimes.protocol import protocol_of
    from ...search.lut_source import table_context
    from . import check_threads

    if args.input_size < 1:
        raise InvalidInput(f"--input-size must be a positive number of pixels, got {args.input_size}")
    check_threads(args.threads)
    output_dir = ensure_writable_dir(args.output_dir)
    outputs = [Output(output_dir / name, "lut", "--output-dir")
               for name in ("lut.json", "lut.txt", *(("lut_measured.txt",) if args.measure else ()))]
    check_outputs(outputs, {"--model": args.model})  # before any work: never over an input or a file of another kind
    model = LatencyModel.load(args.model)
    protocol = protocol_of(model)
    batch = args.batch if args.batch is not None else protocol.batch
    if batch < 1:
        raise InvalidInput(f"--batch must be at least 1, got {batch}")
    dtype = protocol.dtype
    space_args = _space_kwargs(args.space_arg)
    space = _tabled_space(args.space, args.input_size, space_args)
    measuring = model.measuring_protocol(threads=args.threads, device=args.device) if args.measure else None

    start = time.perf_counter()
    profiler = LatencyProfiler(space, (batch, 3, args.input_size, args.input_size), model)
    rows = predicted_rows(profiler)
    predicted_seconds = time.perf_counter() - start
    print(f"predicted {len(rows)} candidates of {len({r.layer for r in rows})} layers in {predicted_seconds:.1f} s")

    # What the latencies hold for: the measuring machine's, or (predicted only) the device model's.
    measured_for = table_context(args.space, space_args, args.input_size,
                                 (measuring or protocol).replace(batch=batch),
                                 None if measuring else model.device.get("name", "unknown"))
    metadata = {"space": args.space, "space_args": space_args,
                "input_shape": list(profiler.input_shape), "model_device": model.device, "model_kind": model.kind,
                "intercept_ms": profiler.intercept_ms, "predicted_seconds": round(predicted_seconds, 3)}
    written = [output_dir / "lut.json", output_dir / "lut.txt"]
    keep_previous(outputs)
    write_lut_txt(written[1], rows, dtype=dtype)

    if measuring is not None:
        protocol = measuring
        apply_allocator_policy(protocol)
        start = time.perf_counter()
        rows = measure_rows(profiler, rows, protocol, progress=lambda done, total, row: print(
            f"  measured {done}: {row.layer} {row.candidate}", flush=True))
        measured_seconds = time.perf_counter() - start
        errors = [abs(r.predicted_ms - r.measured_ms) / r.measured_ms for r in rows if r.measured_ms]
        metadata.update(measured_seconds=round(measured_seconds, 3), measured_device=protocol.device,
                        measured_threads=protocol.threads)
        written.append(output_dir / "lut_measured.txt")
        write_lut_txt(written[-1], rows, measured=True, dtype=dtype)
        ratio = measured_seconds / max(predicted_seconds, 1e-9)
        median_error = f"; median relative error of the prediction {100 * sorted(errors)[len(errors) // 2]:.1f}%" \
            if errors else ""
        print(f"measured the same table in {measured_seconds:.1f} s ({ratio:.0f}x the prediction){median_error}")
    write_lut_json(written[0], rows, metadata=metadata, measured_for=measured_for)
    print(f"wrote {', '.join(str(path) for path in written)}")
    return 0
