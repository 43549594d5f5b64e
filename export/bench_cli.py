"""Prints and writes what ``segstream bench model`` and ``bench compare`` measured."""

from __future__ import annotations

import json
import os

from segstream.export.bench import bench_compare, bench_model, is_artifact, plot_bars
from segstream.stream.config import parse_size_hw
from segstream.stream.errors import ConfigError


def _write_json(path: str, doc) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")


def _plot_samples(doc: dict, path: str) -> None:
    import cv2
    import numpy as np

    samples = doc["samples_ms"]
    w, h, pad = 720, 300, 40
    img = np.full((h, w, 3), 255, np.uint8)
    top = max(samples) * 1.1
    pts = [
        (pad + int(i * (w - 2 * pad) / max(1, len(samples) - 1)), h - pad - int(v / top * (h - 2 * pad)))
        for i, v in enumerate(samples)
    ]
    cv2.polylines(img, [np.array(pts, np.int32)], False, (180, 120, 40), 2, cv2.LINE_AA)
    cv2.putText(
        img,
        f"{doc['model']} {doc['backend']} {doc['precision']} {doc['input_size'][0]}x{doc['input_size'][1]}: "
        f"p50 {doc['latency_ms']['p50']:.1f} ms",
        (10, 24),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    cv2.putText(img, "latency per iteration (ms)", (10, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (90, 90, 90), 1)
    cv2.imwrite(path, img)


def bench_model_command(
    *,
    model: str,
    weights: str | None,
    backend: str,
    device: str,
    precision: str,
    input_size: str | None,
    iters: int,
    json_out: str | None = None,
    plot: str | None = None,
) -> int:
    """``segstream bench model``: one backend, a checkpoint (exported here) or an exported artifact."""
    doc = bench_model(
        model=model,
        weights=weights,
        backend=backend,
        device=device,
        precision=precision,
        input_size_hw=parse_size_hw(input_size),
        iters=iters,
    )
    print(
        f"{doc['model']} {doc['backend']} {doc['device']} {doc['precision']} {doc['input_size'][0]}x{doc['input_size'][1]}: "
        f"p50 {doc['latency_ms']['p50']:.1f} ms, p95 {doc['latency_ms']['p95']:.1f} ms, "
        f"p99 {doc['latency_ms']['p99']:.1f} ms, {doc['throughput_fps']:.1f} fps"
    )
    if plot:
        _plot_samples(doc, plot)
    if json_out:
        _write_json(json_out, {k: v for k, v in doc.items() if k != "samples_ms"})
    return 0


def bench_compare_command(
    *,
    model: str,
    weights: str | None,
    backends: str,
    precisions: str,
    device: str,
    input_size: str | None,
    iters: int,
    json_out: str | None = None,
    plot: str | None = None,
) -> int:
    """``segstream bench compare``: every backend x precision of a checkpoint, one export shared."""
    size = parse_size_hw(input_size)
    if is_artifact(weights):
        # It exports the checkpoint itself for each backend; an artifact would fail as a "damaged checkpoint".
        raise ConfigError(
            f"{weights}: bench compare takes the torch checkpoint (.pth) and exports it itself; "
            "to time an exported artifact use 'segstream bench model --weights ARTIFACT' "
            "or 'segstream bench pipeline'"
        )
    rows = bench_compare(
        model=model,
        weights=weights,
        backends=backends.split(","),
        precisions=precisions.split(","),
        device=device,
        input_size_hw=size,
        iters=iters,
    )
    print(f"{'backend':<12} {'precision':<9} {'size':<10} {'p50 ms':>8} {'p95 ms':>8} {'fps':>7}")
    base = next((r for r in rows if r["backend"] == "torch" and "latency_ms" in r), None)
    for r in rows:
        size_txt = f"{r['input_size'][0]}x{r['input_size'][1]}"
        if "error" in r:
            print(f"{r['backend']:<12} {r['precision']:<9} {size_txt:<10} not run: {r['error']}")
            continue
        speedup = f"  x{base['latency_ms']['p50'] / r['latency_ms']['p50']:.2f} vs torch" if base else ""
        print(
            f"{r['backend']:<12} {r['precision']:<9} {size_txt:<10} {r['latency_ms']['p50']:>8.1f} "
            f"{r['latency_ms']['p95']:>8.1f} {r['throughput_fps']:>7.1f}{speedup}"
        )
    if plot:
        plot_bars(rows, plot, f"{model} on {device}")
    if json_out:
        _write_json(json_out, [{k: v for k, v in r.items() if k != "samples_ms"} for r in rows])
    return 0
