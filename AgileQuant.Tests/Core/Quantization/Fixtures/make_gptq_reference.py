#!/usr/bin/env python3
"""Golden GPTQ codes for GptqReferenceFixtureTests, from an independent NumPy (float64) port of the
algorithm in IST-DASLab/gptq (gptq.py `GPTQ.fasterquant`, quant.py `Quantizer.find_params`/`quantize`,
commit 9f2abd32533c83079847435a7c971bb4420285c8), written against that description, not against
AgileQuant's C#. Asymmetric weights only (the reference's symmetric mode has a different code layout).
Two storage choices of AgileQuant are mirrored so codes can be compared exactly: scales are rounded to
float32, and dequantized values are computed in float32.
Run: python3 make_gptq_reference.py > gptq_reference.json   (needs numpy)
"""
import json
import numpy as np


def find_params(x, bits):
    """Per-row asymmetric range that includes 0 (quant.py, weight=True)."""
    maxq = 2 ** bits - 1
    xmin = np.minimum(x.min(axis=1), 0)
    xmax = np.maximum(x.max(axis=1), 0)
    both_zero = (xmin == 0) & (xmax == 0)
    xmin[both_zero], xmax[both_zero] = -1, 1
    scale = ((xmax - xmin) / maxq).astype(np.float32).astype(np.float64)
    zero = np.round(-xmin / scale)
    return scale, zero


def quantize(w, scale, zero, bits):
    q = np.clip(np.round(w / scale) + zero, 0, 2 ** bits - 1)
    deq = (scale.astype(np.float32) * (q - zero).astype(np.float32)).astype(np.float64)
    return q, deq


def fasterquant(W, X, bits, groupsize, actorder, blocksize, percdamp=0.01):
    rows, cols = W.shape
    W = W.astype(np.float64).copy()
    H = 2.0 / X.shape[0] * (X.T.astype(np.float64) @ X.astype(np.float64))
    scale, zero = find_params(W, bits)
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    groups = None
    if groupsize > 0 and actorder:  # static_groups, always on with act-order in AgileQuant
        groups = [find_params(W[:, i:i + groupsize], bits) for i in range(0, cols, groupsize)]
    perm = np.arange(cols)
    if actorder:
        perm = np.argsort(-np.diag(H), kind="stable")
        W = W[:, perm]
        H = H[perm][:, perm]
    H[np.arange(cols), np.arange(cols)] += percdamp * np.mean(np.diag(H))
    Hinv = np.linalg.cholesky(np.linalg.inv(H)).T  # upper U with inv(H) = U^T U
    Q = np.zeros((rows, cols))
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros_like(W1)
        for i in range(i2 - i1):
            w = W1[:, i]
            d = Hinv[i1 + i, i1 + i]
            if groupsize > 0:
                if groups is None:
                    if (i1 + i) % groupsize == 0:
                        scale, zero = find_params(W[:, i1 + i:i1 + i + groupsize], bits)
                else:
                    scale, zero = groups[perm[i1 + i] // groupsize]
            q, deq = quantize(w, scale, zero, bits)
            Q[:, i1 + i] = q
            err = (w - deq) / d
            W1[:, i:] -= np.outer(err, Hinv[i1 + i, i1 + i:i2])
            Err1[:, i] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    codes = np.zeros_like(Q)
    codes[:, perm] = Q
    return codes.astype(int)


def main():
    rng = np.random.default_rng(2024)
    rows, cols, n = 8, 40, 64
    W = (0.1 * rng.standard_normal((rows, cols))).astype(np.float32)
    A = (rng.standard_normal((cols, cols)) / np.sqrt(cols) + 0.3 * np.eye(cols))
    X = (rng.standard_normal((n, cols)) @ A).astype(np.float32)
    X_dead = X.copy()
    X_dead[:, 7] = 0  # a dead input channel
    cases = []
    # blocksize = groupsize keeps every dynamic group at a block start, where the reference's W is current
    for name, x, groupsize, actorder, blocksize in [
        ("g16_dynamic_dead7", X_dead, 16, False, 16),
        ("g16_actorder_dead7", X_dead, 16, True, 16),
        ("g16_actorder_block128", X, 16, True, 128),
        ("perrow_actorder_block8", X, 0, True, 8),
        ("perrow_block128", X, 0, False, 128),
    ]:
        codes = fasterquant(W, x, 4, groupsize, actorder, blocksize)
        cases.append({"name": name, "groupSize": groupsize, "actOrder": actorder, "blockSize": blocksize,
                      "deadColumn": 7 if x is X_dead else -1, "codes": codes.flatten().tolist()})
    out = {"rows": rows, "cols": cols, "samples": n, "bits": 4,
           "weight": [float(v) for v in W.flatten()], "inputs": [float(v) for v in X.flatten()], "cases": cases}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
