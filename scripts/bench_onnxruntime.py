#!/usr/bin/env python3
"""onnxruntime's side of `dcn-bench detect`: a small timing server the bench starts and drives.

    bench_onnxruntime.py --input IN.safetensors --threads 2 NAME=MODEL.onnx ...

Loads each model into its own InferenceSession (CPU provider, `--threads` intra-op threads, one
inter-op thread, ORT_ENABLE_ALL graph optimisations, the default thread spinning) and the float32
tensor `image` [1, 3, H, W] of IN (the bench's own input, so both sides see the same tensor). Then
it answers one request per line on stdin, one line on stdout:

    run NAME       -> "ms <milliseconds>"  one session.run of model NAME (all its outputs), timed
                                            around the call with time.perf_counter
    outputs NAME   -> "outputs <json>"     every output's shape after one run
    profile NAME N -> "profile <json>"     N profiled runs (onnxruntime's profiler, a separate session):
                                            milliseconds per node name and op type, summed over nodes, per run
    memory         -> "memory <bytes>"     this process's peak resident set size (ru_maxrss)
    quit           -> exits

The first line it writes is "ready onnxruntime <version> <execution providers>", or "error <message>"
(e.g. onnxruntime cannot be imported). The bench alternates its own runs with "run" requests, so
the two never run at the same time.
"""
import argparse
import json
import os
import resource
import struct
import sys
import tempfile
import time


def reply(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def read_image(path):
    import numpy as np

    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        body = f.read()
    entry = header.get("image")
    if entry is None or entry.get("dtype") != "F32":
        raise ValueError(f"{path}: expected a float32 tensor 'image' [1, 3, H, W]")
    start, end = entry["data_offsets"]
    return np.frombuffer(body[start:end], dtype="<f4").reshape(entry["shape"]).copy()


def session_options(ort, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="safetensors file with the float32 tensor 'image' [1, 3, H, W]")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads")
    parser.add_argument("models", nargs="+", help="NAME=MODEL.onnx")
    args = parser.parse_args()
    try:
        import onnxruntime as ort

        image = read_image(args.input)
        models = dict(m.split("=", 1) for m in args.models)
        sessions = {}
        for name, path in models.items():
            sessions[name] = ort.InferenceSession(path, session_options(ort, args.threads), providers=["CPUExecutionProvider"])
    except Exception as e:  # the bench reports it and goes on without onnxruntime
        reply("error " + " ".join(f"{type(e).__name__}: {e}".split()))
        return 1
    reply(f"ready onnxruntime {ort.__version__} {','.join(ort.get_available_providers())}")
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            if words[0] == "quit":
                return 0
            if words[0] == "memory":
                # ru_maxrss is in kilobytes on Linux.
                reply(f"memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}")
            elif words[0] == "run":
                session = sessions[words[1]]
                start = time.perf_counter()
                session.run(None, {"image": image})
                reply(f"ms {(time.perf_counter() - start) * 1000:.3f}")
            elif words[0] == "outputs":
                outputs = sessions[words[1]].run(None, {"image": image})
                reply("outputs " + json.dumps({o.name: list(v.shape) for o, v in zip(sessions[words[1]].get_outputs(), outputs)}))
            elif words[0] == "profile":
                reply("profile " + json.dumps(profile(ort, models[words[1]], image, args.threads, int(words[2]))))
            else:
                reply(f"error unknown request '{words[0]}'")
        except Exception as e:
            reply("error " + " ".join(f"{type(e).__name__}: {e}".split()))
    return 0


def profile(ort, path, image, threads, runs):
    """Milliseconds per node (name -> [op type, ms per run]) over `runs` profiled runs after one
    unprofiled warm-up (onnxruntime's own profiler: each node's kernel time)."""
    options = session_options(ort, threads)
    options.enable_profiling = True
    folder = tempfile.mkdtemp(prefix="dcn-bench-ort-profile-")
    options.profile_file_prefix = os.path.join(folder, "ort")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    session.run(None, {"image": image})
    for _ in range(runs):
        session.run(None, {"image": image})
    trace = session.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    os.rmdir(folder)
    nodes, seen = {}, {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        name = event["name"][: -len("_kernel_time")]
        op = event.get("args", {}).get("op_name", "?")
        # The first run (the warm-up) is left out: it counts each node's first event.
        seen[name] = seen.get(name, 0) + 1
        if seen[name] == 1:
            continue
        entry = nodes.setdefault(name, [op, 0.0])
        entry[1] += event["dur"] / 1000 / runs
    return nodes


if __name__ == "__main__":
    sys.exit(main())
