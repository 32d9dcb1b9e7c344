"""ONNX Resize as exact, differentiable torch code: per resized axis, a constant gather (nearest) or a
constant interpolation matrix (linear, cubic) built from the ONNX coordinate formulas.

Output sizes are static, so each axis's source coordinates are computed once here, in float32 as
onnxruntime computes them; every coordinate transformation and nearest-rounding mode of the spec
is then exact by construction, and torch's own interpolation conventions never enter.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from .context import Ctx, op, rank_of, static_shape
from .values import Const, Dyn, Sym, Value, check_elements

_ONE, _HALF = np.float32(1.0), np.float32(0.5)


def source_coordinates(mode: str, size_in: int, size_out: int, scale: float) -> np.ndarray:
    """For each output index, the input coordinate it samples (ONNX coordinate_transformation_mode)."""
    x = np.arange(size_out, dtype=np.float32)
    s = np.float32(scale)
    if mode == "half_pixel":
        return (x + _HALF) / s - _HALF
    if mode == "half_pixel_symmetric":
        adjustment = np.float32(size_out) / (s * np.float32(size_in))
        offset = np.float32(size_in) / 2 * (_ONE - adjustment)
        return offset + (x + _HALF) / s - _HALF
    if mode == "pytorch_half_pixel":
        return (x + _HALF) / s - _HALF if size_out > 1 else np.zeros_like(x)
    if mode == "align_corners":
        return x * np.float32(size_in - 1) / np.float32(size_out - 1) if size_out > 1 else np.zeros_like(x)
    if mode == "asymmetric":
        return x / s
    if mode == "tf_half_pixel_for_nn":
        return (x + _HALF) / s
    raise ValueError(mode)


def nearest_indices(coords: np.ndarray, rounding: str, size_in: int) -> np.ndarray:
    if rounding == "round_prefer_floor":
        ties = coords == np.trunc(coords) + _HALF
        picked = np.where(ties, np.trunc(coords), np.sign(coords) * np.floor(np.abs(coords) + _HALF))
    elif rounding == "round_prefer_ceil":
        picked = np.sign(coords) * np.floor(np.abs(coords) + _HALF)
    elif rounding == "floor":
        picked = np.floor(coords)
    elif rounding == "ceil":
        picked = np.ceil(coords)
    else:
        raise ValueError(rounding)
    return np.clip(picked, 0, size_in - 1).astype(np.int64)


def linear_matrix(coords: np.ndarray, size_in: int) -> np.ndarray:
    coords = np.clip(coords, 0, size_in - 1)
    low = np.floor(coords).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    weight = (coords - low).astype(np.float64)
    matrix = np.zeros((len(coords), size_in))
    rows = np.arange(len(coords))
    np.add.at(matrix, (rows, low), 1 - weight)
    np.add.at(matrix, (rows, high), weight)
    return matrix


def cubic_matrix(coords: np.ndarray, size_in: int, a: float, exclude_outside: bool) -> np.ndarray:
    matrix = np.zeros((len(coords), size_in))
    for row, coord in enumerate(coords.astype(np.float64)):
        base = math.floor(coord)
        frac = coord - base
        weights, columns = [], []
        for offset, distance in zip((-1, 0, 1, 2), (1 + frac, frac, 1 - frac, 2 - frac)):
            t = abs(distance)
            w = ((a + 2) * t - (a + 3)) * t * t + 1 if t <= 1 else ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
            column = base + offset
            if exclude_outside and not 0 <= column < size_in:
                w = 0.0
            weights.append(w)
            columns.append(min(max(column, 0), size_in - 1))
        total = sum(weights) if exclude_outside else 1.0
        for w, column in zip(weights, columns):
            matrix[row, column] += w / total
    return matrix


def _output_sizes(ctx: Ctx, x: Value, scales: Optional[Value], sizes: Optional[Value]) -> tuple[list[int], list[float]]:
    """Per axis of `x`: output size and the scale used by the coordinate formulas."""
    rank, shape_in = rank_of(x), static_shape(x)
    axes = [a % rank for a in ctx.attr("axes", list(range(rank)))]
    current = [s if s is not None else -1 for s in shape_in]
    outs, factors = list(current), [1.0] * rank
    if sizes is not None and not (isinstance(sizes, Const) and sizes.value.numel() == 0):
        wanted = list(sizes.items) if isinstance(sizes, Sym) else ctx.ints(sizes, "sizes")
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
        for axis, size in zip(axes, wanted):
            if isinstance(size, Dyn):
                if not isinstance(x, Dyn) or list(size.probes) != [p.shape[axis] for p in x.probes]:
                    raise ctx.error("Resize to sizes computed at run time")
                continue
            outs[axis] = size
        if policy != "stretch":
            ratios = [outs[a] / current[a] for a in axes]
            common = min(ratios) if policy == "not_larger" else max(ratios)
            for axis in axes:
                outs[axis] = int(math.floor(common * current[axis] + 0.5))
                factors[axis] = common
        else:
            for axis in axes:
                factors[axis] = outs[axis] / current[axis] if current[axis] > 0 else 1.0
    elif scales is not None:
        for axis, factor in zip(axes, ctx.const(scales, "scales").reshape(-1).tolist()):
            factors[axis] = float(factor)
            if factor != 1.0:
                outs[axis] = int(np.float32(current[axis]) * np.float32(factor))
    else:
        raise ctx.error("Resize needs scales or sizes")
    return outs, factors


@op("Resize")
def resize(ctx: Ctx, x: Value, roi: Optional[Value] = None, scales: Optional[Value] = None,
           sizes: Optional[Value] = None) -> Value:
    mode = ctx.attr("mode", "nearest")
    transform = ctx.attr("coordinate_transformation_mode", "half_pixel")
    if ctx.attr("antialias", 0):
        raise ctx.error("antialiased Resize is not supported")
    if transform == "tf_crop_and_resize":
        raise ctx.error("tf_crop_and_resize is not supported")
    if mode not in ("nearest", "linear", "cubic"):
        raise ctx.error(f"mode {mode!r}")
    if isinstance(scales, Const) and scales.value.numel() == 0:
        scales = None
    outs, factors = _output_sizes(ctx, x, scales, sizes)
    rank, shape_in = rank_of(x), static_shape(x)
    check_elements([max(size, 1) for size in outs], "Resize output")
    for axis in range(rank):
        size_in, size_out = shape_in[axis], outs[axis]
        if size_in is None or (size_out == size_in and factors[axis] == 1.0):
            continue
        check_elements([size_out, size_in], "Resize")
        try:
            coords = source_coordinates(transform, size_in, size_out, factors[axis])
        except ValueError:
            raise ctx.error(f"coordinate_transformation_mode {transform!r}") from None
        if mode == "nearest":
            index = nearest_indices(coords, ctx.attr("nearest_mode", "round_prefer_floor"), size_in)
            if size_out == size_in and np.array_equal(index, np.arange(size_in)):
                continue
            x = ctx.call(torch.index_select, x, axis, Const(torch.from_numpy(index)))
            continue
        if mode == "linear":
            matrix = linear_matrix(coords, size_in)
        else:
            matrix = cubic_matrix(coords, size_in, float(ctx.attr("cubic_coeff_a", -0.75)),
                                  bool(ctx.attr("exclude_outside", 0)))
        if size_out == size_in and np.allclose(matrix, np.eye(size_in), atol=0):
            continue
        x = _along_axis(ctx, x, axis, rank, torch.from_numpy(matrix).float())
    return x


def _along_axis(ctx: Ctx, x: Value, axis: int, rank: int, matrix: torch.Tensor) -> Value:
    """`matrix` (out, in) applied to axis `axis` of `x`."""
    if axis == rank - 1:
        return ctx.call(torch.matmul, x, Const(matrix.t().contiguous()))
    if axis == rank - 2:
        return ctx.call(torch.matmul, Const(matrix), x)
    moved = ctx.call(torch.movedim, x, axis, -1)
    return ctx.call(torch.movedim, ctx.call(torch.matmul, moved, Const(matrix.t().contiguous())), -1, axis)
