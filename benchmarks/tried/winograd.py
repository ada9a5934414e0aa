"""Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray 2016) against im2col: float32 accuracy and time.

    python -m benchmarks.tried.winograd              # 96 -> 128 channels at 32x32 and 192 -> 384 at 8x8, b32
    python -m benchmarks.tried.winograd --threads 1

Left out of minigrad (benchmarks/README.md, "Tried and left out"); kept here so that the figures can be made
again. A stride-1 3x3 convolution with padding 1: every 4x4 tile of the padded input (tiles overlap by 2)
gives a 2x2 tile of the output. With the transforms

    U = G g G^T      (each 3x3 filter to 4x4),   V = B^T d B   (each 4x4 input tile),
    M[xi, nu] = U[xi, nu] @ V[xi, nu]            (16 products (C_out, C_in) @ (C_in, tiles)),
    Y = A^T M A      (each 4x4 product tile to the 2x2 output tile),

it does 16 multiplies per 4 outputs and input channel where direct convolution does 36: 2.25x fewer. The
price is the transforms, extra passes over memory, and a different float32 rounding: the transforms add and
subtract the inputs before the products, which can cancel. The accuracy is measured against a float64
convolution, norm-wise as the tolerance policy does (minigrad/testing/tolerance.py): max|error| / max|exact|.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

# B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] and A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]
# are written out as adds in the transforms below; G is applied to the small filters by einsum.
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)


def _input_transform(tiles: np.ndarray) -> np.ndarray:
    """V = B^T d B for every 4x4 tile d (the last two axes), by adds: B^T's entries are 0 and +-1."""
    d = [tiles[..., i, :] for i in range(4)]                     # rows of every tile
    rows = [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]   # B^T d
    out = []
    for r in rows:                                                # (B^T d) B: the same on the columns
        c = [r[..., j] for j in range(4)]
        out += [c[0] - c[2], c[1] + c[2], c[2] - c[1], c[1] - c[3]]
    return np.stack(out)                                          # (16, ...): component xi * 4 + nu


def _output_transform(m: np.ndarray) -> list:
    """Y = A^T M A for every 4x4 product tile M (the first axis, 16 components): the 2x2 outputs, by adds."""
    m = m.reshape(4, 4, *m.shape[1:])
    rows = [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]               # A^T M
    return [[r[0] + r[1] + r[2], r[1] - r[2] - r[3]] for r in rows]   # (A^T M) A: y[i][j]


def winograd_conv3x3(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """x (N, C, H, W) with H and W even, weight (O, C, 3, 3): the stride-1, padding-1 convolution, (N, O, H, W)."""
    n, c, h, w = x.shape
    o = weight.shape[0]
    padded = np.zeros((c, n, h + 2, w + 2), dtype=x.dtype)
    padded[:, :, 1:-1, 1:-1] = x.transpose(1, 0, 2, 3)
    tiles_h, tiles_w = h // 2, w // 2
    # every 4x4 tile, stride 2: (C, N, tiles_h, tiles_w, 4, 4), a view
    tiles = np.lib.stride_tricks.sliding_window_view(padded, (4, 4), axis=(2, 3))[:, :, ::2, ::2]
    v = _input_transform(tiles).reshape(16, c, -1)                                   # (16, C, tiles)
    u = np.einsum("ij,ocjk,lk->iloc", G, weight, G).reshape(16, o, c).astype(x.dtype)  # G g G^T, small
    m = np.matmul(u, v)                                                              # 16 products (O, tiles)
    y = np.empty((n, o, h, w), dtype=x.dtype)
    for i, row in enumerate(_output_transform(m)):
        for j, part in enumerate(row):
            y[:, :, i::2, j::2] = part.reshape(o, n, tiles_h, tiles_w).transpose(1, 0, 2, 3)
    return y


def im2col_conv3x3(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The same convolution as im2col + one product (the columns method of minigrad's fast kernels)."""
    from minigrad.kernels.fast import conv

    return conv.conv2d_forward(x, weight, None, padding=1, method="columns")[0]


def best_ms(function, repeats: int = 5) -> float:
    function()
    fastest = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: numpy's default)")
    args = parser.parse_args(argv)
    if args.threads:
        from minigrad import blas

        blas.set_threads(args.threads)
    rng = np.random.default_rng(0)
    print("case                  winograd ms (transforms + 16 products)  im2col ms (of it the product)"
          "   float32 error: winograd  im2col")
    for n, c, size, o in [(32, 96, 32, 128), (32, 192, 8, 384)]:
        print(measure(rng, n, c, size, o))


def measure(rng: np.random.Generator, n: int, c: int, size: int, o: int) -> str:
    """One row of the table: times (the products apart) and float32 errors of both ways, for one shape."""
    x64 = rng.standard_normal((n, c, size, size))
    w64 = rng.standard_normal((o, c, 3, 3)) / np.sqrt(9 * c)
    exact = im2col_conv3x3(x64, w64)
    x32, w32 = x64.astype(np.float32), w64.astype(np.float32)
    assert np.allclose(winograd_conv3x3(x64, w64), exact, rtol=1e-10, atol=1e-10)   # the algebra is right
    # norm-wise, as the tolerance policy compares: max|error| / max|exact|
    errors = [np.abs(f(x32, w32) - exact).max() / np.abs(exact).max() for f in (winograd_conv3x3, im2col_conv3x3)]
    winograd_ms = best_ms(lambda: winograd_conv3x3(x32, w32))
    im2col_ms = best_ms(lambda: im2col_conv3x3(x32, w32))
    # the products alone: Winograd's 16 (O, C) @ (C, tiles), im2col's one (O, 9C) @ (9C, N*H*W)
    u = rng.standard_normal((16, o, c)).astype(np.float32)
    v = rng.standard_normal((16, c, n * size * size // 4)).astype(np.float32)
    weight_matrix = w32.reshape(o, -1)
    columns = rng.standard_normal((9 * c, n * size * size)).astype(np.float32)
    products_ms = best_ms(lambda: np.matmul(u, v))
    gemm_ms = best_ms(lambda: weight_matrix @ columns)
    return (f"{c:4d} -> {o:<4d} @{size:<3d} b{n:<4d}{winograd_ms:9.1f} ({winograd_ms - products_ms:6.1f} + "
            f"{products_ms:5.1f}){im2col_ms:27.1f} ({gemm_ms:5.1f}){errors[0]:27.2e}{errors[1]:9.2e}")


if __name__ == "__main__":
    main()
