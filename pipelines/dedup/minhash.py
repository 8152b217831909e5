"""MinHash signatures, vectorised: token hashes in Rust (rensa), n-gram shingles in numpy, digests in Rust.

A document is a token sequence. Its shingles are the hashes of its n consecutive tokens, built by
a polynomial roll over the token hashes (n numpy operations per document, no shingle strings);
the signature is rensa's MinHash of the shingle set. Documents with fewer than n tokens have no
shingles: they are reported as short, never signed as empty sets (which would all collide).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from functools import cache

import numpy as np
from rensa import RMinHash

_ROLL = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier for the polynomial roll


def shingle_hashes(token_hashes: np.ndarray, ngram: int) -> np.ndarray:
    """Distinct 64-bit hashes of every run of `ngram` consecutive tokens (empty when too short)."""
    count = len(token_hashes) - ngram + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    rolled = token_hashes[:count].copy()
    with np.errstate(over="ignore"):
        for offset in range(1, ngram):
            rolled = rolled * _ROLL + token_hashes[offset : offset + count]
    return np.unique(rolled)


def signatures(documents: list[list[str]], *, ngram: int, num_perm: int, seed: int) -> list[np.ndarray | None]:
    """One uint32 MinHash signature per document, None for documents shorter than `ngram` tokens."""
    hashed = RMinHash.hash_token_sets(documents)
    shingles = [shingle_hashes(np.fromiter(h, dtype=np.uint64, count=len(h)), ngram) for h in hashed]
    signable = [i for i, s in enumerate(shingles) if len(s)]
    out: list[np.ndarray | None] = [None] * len(documents)
    if not signable:
        return out
    flat = np.concatenate([shingles[i] for i in signable])
    offsets = np.zeros(len(signable) + 1, dtype=np.uint64)
    np.cumsum([len(shingles[i]) for i in signable], out=offsets[1:])
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(flat, offsets, num_perm, seed)
    for index, row in zip(signable, matrix.to_rows()):
        out[index] = np.asarray(row, dtype=np.uint32)
    return out


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Share of equal MinHash values: an unbiased estimate of the Jaccard similarity of the shingle sets."""
    return float(np.count_nonzero(a == b)) / len(a)


def exact_jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


@dataclass(frozen=True)
class Banding:
    """LSH banding: `bands` bands of `rows` signature values each (bands * rows <= num_perm)."""

    bands: int
    rows: int

    def keys(self, signature: np.ndarray) -> list[bytes]:
        """One key per band: the band index and a hash of its values."""
        keys = []
        for band in range(self.bands):
            values = signature[band * self.rows : (band + 1) * self.rows].tobytes()
            digest = hashlib.blake2b(values, digest_size=8).digest()
            keys.append(struct.pack(">H", band) + digest)
        return keys


@cache
def optimal_banding(threshold: float, num_perm: int, false_positive_weight: float = 0.3) -> Banding:
    """The (bands, rows) minimising weighted false-positive and false-negative areas of the S-curve.

    Recall is weighted above precision (0.7 / 0.3 by default) because candidates are verified
    against their signatures afterwards, which removes false positives but cannot restore misses.
    """
    grid = np.linspace(0.0, 1.0, 2001)
    below, above = grid <= threshold, grid >= threshold
    best: tuple[float, int, int] | None = None
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            collide = 1.0 - (1.0 - grid**rows) ** bands
            fp = np.trapezoid(collide[below], grid[below])
            fn = np.trapezoid(1.0 - collide[above], grid[above])
            error = false_positive_weight * fp + (1.0 - false_positive_weight) * fn
            if best is None or error < best[0]:
                best = (error, bands, rows)
    assert best is not None
    return Banding(best[1], best[2])
