"""MinHash signatures, vectorised over a whole batch of documents with numpy, digests in Rust (rensa).

Tokens are maximal runs of word bytes (ASCII letters, digits, `_`, and every non-ASCII byte, so
UTF-8 identifiers stay whole) and single punctuation bytes; white space separates. A batch of
documents is joined into one byte array; token hashes come from one polynomial prefix hash over
it, shingle hashes from a polynomial roll over the token hashes (n numpy operations per batch, not
per document, and no shingle strings), and rensa digests the shingle hashes of all documents in one
call. MinHash is blind to repeated shingles, so no per-document de-duplication is needed.
Documents with fewer than n tokens have no shingles: they are reported as short, never signed as
empty sets (which would all collide).
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from dataclasses import dataclass
from functools import cache

import numpy as np
from rensa import RMinHash

_ROLL = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier for the shingle roll
_BYTE_BASE = 0x100000001B3  # odd multiplier of the byte-level prefix hash
_BYTE_BASE_INVERSE = pow(_BYTE_BASE, -1, 2**64)
_WORD = np.zeros(256, dtype=bool)
for _byte in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _WORD[_byte] = True
_WORD[128:] = True
_SPACE = np.zeros(256, dtype=bool)
for _byte in b" \t\n\r\x0b\x0c":
    _SPACE[_byte] = True


_POWER_CACHE: dict[int, np.ndarray] = {}


def _powers(base: int, count: int) -> np.ndarray:
    """base**0 .. base**(count-1) modulo 2**64, cached and grown geometrically (a serial scan is slow)."""
    cached = _POWER_CACHE.get(base)
    if cached is None or len(cached) < count:
        size = max(count, 2 * len(cached) if cached is not None else 1 << 16)
        powers = np.full(size, base, dtype=np.uint64)
        powers[0] = 1
        cached = _POWER_CACHE[base] = np.multiply.accumulate(powers, dtype=np.uint64)
    return cached[:count]


def _mix(values: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (xor-shift-multiply) so that similar tokens get unrelated hashes."""
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xC4CEB9FE1A85EC53)
    return values ^ (values >> np.uint64(33))


def token_hashes(texts: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every token of every document, in order; tokens per document)."""
    if not texts:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    joined = b"\n".join(texts)  # white space between documents: no token spans two
    data = np.frombuffer(joined, dtype=np.uint8)
    doc_starts = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(t) + 1 for t in texts], out=doc_starts[1:])
    if not len(data):
        return np.empty(0, dtype=np.uint64), np.zeros(len(texts), dtype=np.int64)
    word = _WORD[data]
    punct = ~(word | _SPACE[data])
    previous_word = np.concatenate(([False], word[:-1]))
    next_word = np.concatenate((word[1:], [False]))
    starts = np.flatnonzero(punct | (word & ~previous_word))
    ends = np.flatnonzero(punct | (word & ~next_word))
    with np.errstate(over="ignore"):
        prefix = np.cumsum((data.astype(np.uint64) + np.uint64(1)) * _powers(_BYTE_BASE, len(data)), dtype=np.uint64)
        before = np.where(starts > 0, prefix[np.maximum(starts - 1, 0)], np.uint64(0))
        hashes = _mix((prefix[ends] - before) * _powers(_BYTE_BASE_INVERSE, len(data))[starts])
    counts = np.diff(np.searchsorted(starts, doc_starts))
    return hashes, counts


def shingle_hashes(hashes: np.ndarray, counts: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes of every run of `ngram` consecutive tokens inside one document; shingles per document)."""
    shingles_per_doc = np.maximum(counts - ngram + 1, 0)
    windows = len(hashes) - ngram + 1
    if windows <= 0 or not shingles_per_doc.any():
        return np.empty(0, dtype=np.uint64), shingles_per_doc
    rolled = hashes[:windows].copy()
    with np.errstate(over="ignore"):
        for offset in range(1, ngram):
            rolled = rolled * _ROLL + hashes[offset : offset + windows]
    # A window is inside its document when at least `ngram` tokens of that document start at it.
    position = np.arange(len(hashes)) - np.repeat(np.cumsum(counts) - counts, counts)
    remaining = np.repeat(counts, counts) - position
    return rolled[remaining[:windows] >= ngram], shingles_per_doc


def signatures(texts: list[bytes], *, ngram: int, num_perm: int, seed: int) -> list[np.ndarray | None]:
    """One uint32 MinHash signature per document, None for documents shorter than `ngram` tokens."""
    return [sig for _, sig in analyse(texts, ngram=ngram, num_perm=num_perm, seed=seed)]


def analyse(texts: list[bytes], *, ngram: int, num_perm: int, seed: int) -> list[tuple[str, np.ndarray | None]]:
    """Per document: (hash of its token sequence, for exact dedup; MinHash signature or None when short)."""
    hashes, counts = token_hashes(texts)
    ends = np.cumsum(counts)
    exact = [hashlib.blake2b(hashes[end - count : end].tobytes(), digest_size=16).hexdigest() for end, count in zip(ends, counts)]
    return list(zip(exact, _signatures(hashes, counts, len(texts), ngram, num_perm, seed)))


def _signatures(hashes: np.ndarray, counts: np.ndarray, documents: int, ngram: int, num_perm: int, seed: int) -> list[np.ndarray | None]:
    shingles, per_doc = shingle_hashes(hashes, counts, ngram)
    out: list[np.ndarray | None] = [None] * documents
    signable = np.flatnonzero(per_doc)
    if not len(signable):
        return out
    offsets = np.zeros(len(signable) + 1, dtype=np.uint64)
    np.cumsum(per_doc[signable], out=offsets[1:])
    rows = RMinHash.digest_matrix_from_flat_token_hashes(shingles, offsets, num_perm, seed).to_rows()
    matrix = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.uint32, count=len(rows) * num_perm).reshape(len(rows), num_perm)
    for row, index in enumerate(signable):
        out[index] = matrix[row]
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
