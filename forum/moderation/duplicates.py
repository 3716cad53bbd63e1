"""Near-duplicate detection for Spanish text: no app, no database, only texts in and pairs out.

Texts are normalised (accents, case, punctuation), identical normalised texts form one
bucket (form letters, the same text sent by forum and by e-mail), and one text per bucket
goes through MinHash (word 3-gram shingles) and datasketch's MinHashLSH to find small edits.
The signatures are datasketch's "legacy" MinHash over 32-bit shingle hashes, computed for
many texts in one vectorised pass (the tests check they equal `MinHash.update_batch`).
A text's `fingerprints` entry (normalised-text hash and signature) can be stored, and a
`SimilarityIndex` grows from stored entries without normalising anything again.
"""

import hashlib
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from forum.text import fold_many

NUM_PERM = 64
SEED = 1
SHINGLE_WORDS = 3
THRESHOLD = 0.7  # estimated Jaccard similarity of the shingle sets
_MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))
_CHUNK_SHINGLES = 4_096  # rows of the (shingles x permutations) matrix per pass: cache-sized


def shingle_hashes_many(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """`shingle_hashes` of many normalised texts: every hash in order, and how many per text."""
    split = [key.split() for key in keys]
    counts = np.fromiter((len(words) for words in split), dtype=np.int64, count=len(split))
    words = list(chain.from_iterable(split))
    vocabulary = {word: zlib.crc32(word.encode()) for word in set(words)}
    hashes = np.fromiter(map(vocabulary.__getitem__, words), dtype=np.uint64, count=len(words))
    owner = np.repeat(np.arange(len(keys)), counts)
    long_text = counts > SHINGLE_WORDS
    gram_owners, gram_values = owner[:0], hashes[:0]
    if len(words) > SHINGLE_WORDS - 1:
        grams = hashes[:-2] * _MIX[0] + hashes[1:-1] * _MIX[1] + hashes[2:]  # wraps, as meant
        grams = np.bitwise_and(grams ^ (grams >> np.uint64(32)), _MAX_HASH)
        inside = (owner[:-2] == owner[2:]) & long_text[owner[:-2]]  # 3-grams within one text
        gram_owners, gram_values = owner[:-2][inside], grams[inside]
    short = np.flatnonzero(~long_text)  # texts of 3 words or fewer: one hash of the whole
    short_hashes = np.array([zlib.crc32(keys[i].encode()) for i in short], dtype=np.uint64)
    owners = np.concatenate([gram_owners, short])
    values = np.concatenate([gram_values, short_hashes])
    order = np.argsort(owners, kind="stable")
    return values[order], np.bincount(owners, minlength=len(keys))


def shingle_hashes(normalised: str) -> np.ndarray:
    """32-bit hashes of the word 3-grams (of the whole text when it is shorter)."""
    words = normalised.split()
    if len(words) <= SHINGLE_WORDS:
        values = [zlib.crc32(normalised.encode())] if normalised else []
        return np.array(values, dtype=np.uint64)
    hashes = np.fromiter(
        (zlib.crc32(word.encode()) for word in words), dtype=np.uint64, count=len(words)
    )
    grams = hashes[:-2] * _MIX[0] + hashes[1:-1] * _MIX[1] + hashes[2:]  # wraps, as meant
    return np.bitwise_and(grams ^ (grams >> np.uint64(32)), _MAX_HASH)


def reference_minhash(values: Iterable[int]) -> MinHash:
    """datasketch's own MinHash of some shingle hashes, with the parameters used here."""
    minhash = MinHash(num_perm=NUM_PERM, seed=SEED, hashfunc=int, scheme="legacy")
    minhash.update_batch(list(values))
    return minhash


def signatures(hash_sets: Sequence[np.ndarray]) -> np.ndarray:
    """MinHash signatures, one row per non-empty set of shingle hashes."""
    counts = np.array([len(values) for values in hash_sets], dtype=np.int64)
    return signatures_flat(np.concatenate(list(hash_sets)), counts)


def signatures_flat(hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """MinHash signatures of consecutive runs of `hashes` (`counts[i]` for text i, all > 0),
    a few thousand shingles at a time so the (shingles x permutations) matrix stays small."""
    a, b = reference_minhash([]).permutations
    a = a.astype(np.uint64)
    b = b.astype(np.uint64)
    ends = np.cumsum(counts)
    out = np.empty((len(counts), NUM_PERM), dtype=np.uint64)
    first = 0
    while first < len(counts):
        start = ends[first] - counts[first]
        last = max(first + 1, int(np.searchsorted(ends, start + _CHUNK_SHINGLES, side="right")))
        chunk = hashes[start : ends[last - 1]]
        permuted = np.bitwise_and((chunk[:, None] * a + b) % _MERSENNE_PRIME, _MAX_HASH)
        offsets = ends[first:last] - counts[first:last] - start
        out[first:last] = np.minimum.reduceat(permuted, offsets, axis=0)
        first = last
    return out


@dataclass
class Similar:
    """What a run finds: buckets of identical texts and pairs of near-identical ones."""

    buckets: list[list[int]]  # ids with the same normalised text (2 or more), sorted
    pairs: list[tuple[int, int]]  # (smaller, larger id): similar texts, a spanning forest

    def edges(self) -> list[tuple[int, int]]:
        """Every link found: each bucket as a chain of ids, and the near-identical pairs."""
        chained = [
            (bucket[i], bucket[i + 1]) for bucket in self.buckets for i in range(len(bucket) - 1)
        ]
        return chained + self.pairs


def text_hash(normalised: str) -> bytes:
    """16 bytes that stand for a normalised text: equal texts, equal hashes."""
    return hashlib.blake2b(normalised.encode(), digest_size=16).digest()


def fingerprints(texts: Sequence[str]) -> list[tuple[bytes, np.ndarray] | None]:
    """For each text, the hash of its normalised text and its MinHash signature (uint32),
    or None when it has no words. Identical normalised texts are signed once."""
    keys = fold_many(texts)
    distinct = list(dict.fromkeys(key for key in keys if key))
    if not distinct:
        return [None] * len(keys)
    rows = signatures_flat(*shingle_hashes_many(distinct)).astype(np.uint32)
    signed = {key: (text_hash(key), row) for key, row in zip(distinct, rows, strict=True)}
    return [signed[key] if key else None for key in keys]


class SimilarityIndex:
    """Identical and near-identical texts among those added so far, in increasing id order.

    Each new normalised text is queried against the LSH of the earlier ones, and linked to
    each earlier similar text (smallest id first) not yet connected to it, then inserted.
    Only a spanning forest is kept: a link between texts already connected adds nothing to a
    suggestion, and a campaign of n edited copies would otherwise give n * n pairs. The
    forest depends only on the texts and their ids, never on the order they were read in,
    so adding a newer text gives exactly what building everything again would.
    """

    def __init__(self, threshold: float = THRESHOLD) -> None:
        self.threshold = threshold
        self.last_id = 0
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self._ids_by_hash: dict[bytes, list[int]] = {}  # first id: the text's representative
        self._signature_of: dict[int, np.ndarray] = {}  # representative -> signature
        self._parent: dict[int, int] = {}  # union-find over representatives
        self._pairs: list[tuple[int, int]] = []

    def add(self, ident: int, fingerprint: tuple[bytes, np.ndarray] | None) -> None:
        """Add one text by its `fingerprints` entry; `ident` must exceed every earlier id."""
        if ident <= self.last_id:
            raise ValueError(f"id {ident} is not after {self.last_id}: ids must increase")
        self.last_id = ident
        if fingerprint is None:
            return
        key, signature = fingerprint
        ids = self._ids_by_hash.setdefault(key, [])
        ids.append(ident)
        if len(ids) > 1:
            return
        minhash = LeanMinHash(seed=SEED, hashvalues=signature, scheme="legacy")
        self._parent[ident] = ident
        for other in sorted(self._lsh.query(minhash)):
            if self._find(other) == self._find(ident):
                continue
            agreeing = np.count_nonzero(self._signature_of[other] == signature)
            if agreeing / NUM_PERM >= self.threshold:
                self._parent[self._find(other)] = self._find(ident)
                self._pairs.append((other, ident))
        self._lsh.insert(ident, minhash, check_duplication=False)
        self._signature_of[ident] = signature

    def _find(self, x: int) -> int:
        parent = self._parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def similar(self) -> Similar:
        """The buckets and pairs found so far."""
        buckets = [list(ids) for ids in self._ids_by_hash.values() if len(ids) > 1]
        return Similar(buckets=sorted(buckets), pairs=sorted(self._pairs))


def find_similar(texts: Iterable[tuple[int, str]], threshold: float = THRESHOLD) -> Similar:
    """Find identical and near-identical texts among (id, text) pairs."""
    ordered = sorted(texts)
    index = SimilarityIndex(threshold)
    for (ident, _), fingerprint in zip(
        ordered, fingerprints([text for _, text in ordered]), strict=True
    ):
        index.add(ident, fingerprint)
    return index.similar()
