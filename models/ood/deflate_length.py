"""The length of zlib's level-1 output for one image, computed without compressing (numba).

The served score's complexity term reads ``8 * len(zlib.compress(bytes, 1))`` of the image
(:func:`~models.ood.complexity.zlib_bits`); only the length is needed, yet zlib writes every
code. Here the same length is computed as zlib computes it before writing: its level-1 parse
(``deflate_fast``: a 3-byte hash, chains of 4, matches up to 258 bytes), its Huffman code
lengths (``trees.c``: the heap and its depth tie-break, the length limit's repair, the
code-length tree) and its choice of a stored, fixed or dynamic block. The same number, not an
estimate: :func:`zlib1_compiles` checks it against this process's zlib on probe images, so that
a zlib that parses otherwise (zlib-ng) keeps the zlib call; ``bench/zlib_length.py`` compares
the two on every Fashion-MNIST image, every OOD set and generated inputs
(``bench/results/zlib_length.md``: none differs).

Why not a faster compressor (libdeflate) or an order-0 length: another length changes the
guard's scores and its measured AUROC (``entropy`` is worse on the held-out classes,
``bench/results/ood_compressor_entropy_ab.md``). Limits: one block, as zlib writes for inputs
under 16,383 bytes at its default memory level (:data:`MAX_BYTES`); larger images keep the call.
numba compiles it in ~10 s on this 2-core host, once: the machine code is cached beside this
file (or in ``NUMBA_CACHE_DIR``). Where no cache is writable, every worker pays it at start (the
served guarded predictor builds in 16.6 s instead of 4.6 s without this module; 0.9 s cached).
"""

from __future__ import annotations

import functools

import numpy as np

from models.ood.compiled import jit as _jit
from models.ood.compiled import numba
from models.ood.complexity import zlib_bits

MAX_BYTES = 16382  # one block of symbols at zlib's default memLevel (lit_bufsize 16384 - 1)
MIN_MATCH, MAX_MATCH = 3, 258
HASH_MASK = (1 << 15) - 1  # hash_bits = memLevel 8 + 7; the hash of 3 bytes, shift 5
LITERALS, L_CODES, D_CODES, BL_CODES = 256, 286, 30, 19
END_BLOCK = 256
# level 1 of zlib's configuration table: good 4, lazy (max insert) 4, nice 8, chain 4
MAX_INSERT, NICE_LENGTH, MAX_CHAIN = 4, 8, 4

EXTRA_LBITS = np.array([0] * 8 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4 + [0], np.int64)
EXTRA_DBITS = np.array([0, 0] + [b for b in range(14) for _ in (0, 1)], np.int64)[:D_CODES]
EXTRA_BLBITS = np.array([0] * 16 + [2, 3, 7], np.int64)
BL_ORDER = np.array([16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15], np.int64)
# the fixed codes' lengths (RFC 1951 3.2.6) for the static block's size
STATIC_LLEN = np.array([8] * 144 + [9] * 112 + [7] * 24 + [8] * 8, np.int64)[:L_CODES]
STATIC_DLEN = np.full(D_CODES, 5, np.int64)


# zlib's _length_code (match length - 3 -> 0-28; 258 is code 285, not 284 + 5 extra bits) and
# base_dist (each distance code's first distance - 1)
LENGTH_CODE = np.repeat(np.arange(29), 1 << EXTRA_LBITS)[:256].astype(np.int64)
LENGTH_CODE[255] = 28
DIST_BASE = np.concatenate([[0], np.cumsum(1 << EXTRA_DBITS)[:-1]]).astype(np.int64)


@_jit
def _longest_match(
    win: np.ndarray, prev: np.ndarray, start: int, cur: int, lookahead: int
) -> tuple[int, int]:
    """The level-1 ``longest_match`` of zlib: (length, match start); length 2 when none found."""
    chain = MAX_CHAIN
    best = MIN_MATCH - 1  # deflate_fast's prev_length
    nice = NICE_LENGTH if lookahead >= NICE_LENGTH else lookahead
    found = 0
    end1, end = win[start + best - 1], win[start + best]
    while True:
        if win[cur + best] == end and win[cur + best - 1] == end1:
            if win[cur] == win[start] and win[cur + 1] == win[start + 1]:
                # byte 2 is equal when 0 and 1 are (same hash); zlib compares 8 bytes per
                # bound check, so a match may run into the zeros after the input (clamped below)
                off = 2
                while True:
                    equal = True
                    for _ in range(8):
                        off += 1
                        if win[start + off] != win[cur + off]:
                            equal = False
                            break
                    if not equal or off >= MAX_MATCH:
                        break
                if off > best:
                    found, best = cur, off
                    if off >= nice:
                        break
                    end1, end = win[start + best - 1], win[start + best]
        cur = prev[cur]
        if cur <= 0:  # NIL (position 0 is never a match, as in zlib)
            break
        chain -= 1
        if chain == 0:
            break
    return (best if best <= lookahead else lookahead), found


POSITION_BITS, POSITION_MASK = 14, (1 << 14) - 1  # positions < MAX_BYTES < 2**14


@_jit(inline="always")
def _insert(table: np.ndarray, h: int, position: int) -> int:
    """Set zlib's ``head[h] = position``, returning the old ``head[h]`` (0: none).

    zlib's head table has 32,768 entries, zeroed per call (64 KB to bring into the cache after a
    forward pass); an image inserts at most one position per byte, so the same map is kept
    here as a small open-addressed table of ``(h + 1) << 14 | position`` (0: empty).
    """
    mask = table.shape[0] - 1
    key = (h + 1) << POSITION_BITS
    slot = (h * 40503) & mask  # spread: h's low bits are the third byte's alone
    while True:
        entry = table[slot]
        if entry == 0 or entry >> POSITION_BITS == h + 1:
            table[slot] = key | position
            return entry & POSITION_MASK
        slot = (slot + 1) & mask


@_jit(inline="always")
def _hash(win: np.ndarray, i: int) -> int:
    """The rolling hash of zlib at ``i`` (hash_bits 15, shift 5): a function of three bytes."""
    return ((np.int64(win[i]) << 10) ^ (np.int64(win[i + 1]) << 5) ^ win[i + 2]) & HASH_MASK


@_jit
def _symbol_frequencies(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``deflate_fast``'s parse of ``data``: the literal/length and distance frequencies."""
    n = data.shape[0]
    win = np.zeros(n + MAX_MATCH + 2, np.uint8)  # zlib zeroes 258 bytes after the input
    win[:n] = data
    slots = 64
    while slots < 2 * n:  # at most half full
        slots <<= 1
    head = np.zeros(slots, np.int32)
    prev = np.zeros(n + 1, np.int16)  # positions fit int16 (MAX_BYTES)
    lfreq = np.zeros(L_CODES, np.int64)
    dfreq = np.zeros(D_CODES, np.int64)
    lfreq[END_BLOCK] = 1
    start, lookahead = 0, n
    while lookahead > 0:
        candidate = 0
        if lookahead >= MIN_MATCH:  # INSERT_STRING
            candidate = _insert(head, _hash(win, start), start)
            prev[start] = candidate
        length, found = 0, 0
        if candidate != 0:
            length, found = _longest_match(win, prev, start, candidate, lookahead)
        if length >= MIN_MATCH:
            lfreq[LENGTH_CODE[length - MIN_MATCH] + LITERALS + 1] += 1
            dist = start - found - 1
            code = D_CODES - 1
            while DIST_BASE[code] > dist:
                code -= 1
            dfreq[code] += 1
            lookahead -= length
            if length <= MAX_INSERT and lookahead >= MIN_MATCH:
                for s in range(start + 1, start + length):  # insert the match's strings
                    prev[s] = _insert(head, _hash(win, s), s)
            start += length
        else:
            lfreq[win[start]] += 1
            lookahead -= 1
            start += 1
    return lfreq, dfreq


# zlib orders the heap by frequency, then depth (``smaller``: freq[n] < freq[m], or equal and
# depth[n] <= depth[m]); both in one integer, (frequency << DEPTH_BITS) | depth, compare alike
DEPTH_BITS = 9  # depths stay under 2 * L_CODES + 1 < 512


@_jit(inline="always")
def _down_heap(heap: np.ndarray, size: int, key: np.ndarray, k: int) -> None:
    """Sift ``heap[k]`` down as zlib's ``pqdownheap`` (the smaller son; equal keys: the right)."""
    v = heap[k]
    kv = key[v]
    j = k << 1
    while j <= size:
        hj = heap[j]
        kj = key[hj]
        if j < size:
            h1 = heap[j + 1]
            k1 = key[h1]
            if k1 <= kj:
                j += 1
                hj, kj = h1, k1
        if kv <= kj:
            break
        heap[k] = hj
        k = j
        j <<= 1
    heap[k] = v


@_jit
def _huffman_tree(freq: np.ndarray, elems: int) -> tuple[np.ndarray, ...]:
    """As zlib's ``build_tree`` before ``gen_bitlen``: (heap, key, dad, top, max code, forced).

    ``freq`` ``[elems]``: the symbols' frequencies. The nodes sorted by frequency are
    ``heap[top:]`` (the root first); ``key``: frequency << DEPTH_BITS | depth; ``forced``:
    codes of frequency 1 added so that the tree has two, as zlib does.
    """
    nodes = 2 * elems + 1  # zlib's HEAP_SIZE for the literal tree; enough for each
    heap = np.zeros(nodes, np.int64)
    key = np.zeros(nodes, np.int64)
    dad = np.zeros(nodes, np.int64)
    size, top, max_code, forced = 0, nodes, -1, 0
    for n in range(elems):
        if freq[n] != 0:
            size += 1
            heap[size] = max_code = n
            key[n] = freq[n] << DEPTH_BITS
    while size < 2:  # at least two codes
        node = max_code + 1 if max_code < 2 else 0
        max_code = max(max_code, node)
        size += 1
        heap[size] = node
        key[node] = 1 << DEPTH_BITS
        forced += 1
    for n in range(size // 2, 0, -1):
        _down_heap(heap, size, key, n)
    node = elems
    mask = (1 << DEPTH_BITS) - 1
    while size >= 2:
        n = heap[1]  # pqremove
        heap[1] = heap[size]
        size -= 1
        _down_heap(heap, size, key, 1)
        m = heap[1]
        heap[top - 1], heap[top - 2] = n, m
        top -= 2
        kn, km = key[n], key[m]
        depth = max(kn & mask, km & mask) + 1
        key[node] = (((kn >> DEPTH_BITS) + (km >> DEPTH_BITS)) << DEPTH_BITS) | depth
        dad[n] = dad[m] = node
        heap[1] = node
        node += 1
        _down_heap(heap, size, key, 1)
    top -= 1
    heap[top] = heap[1]
    return heap, key, dad, np.int64(top), np.int64(max_code), np.int64(forced)


@_jit
def _code_lengths(
    freq: np.ndarray, elems: int, extra: np.ndarray, base: int, max_length: int, lens: np.ndarray
) -> tuple[int, int, int]:
    """Code lengths into ``lens`` as zlib's ``gen_bitlen``; (max code, bits, codes forced).

    ``bits``: the sum of frequency x (length + extra bits), as zlib's ``opt_len`` gains it (a
    forced code counts one bit, which zlib takes off again); lengths over ``max_length`` are
    repaired as zlib repairs them.
    """
    heap, key, dad, top, max_code, forced = _huffman_tree(freq, elems)
    nodes = heap.shape[0]
    count = np.zeros(16, np.int64)
    length = np.zeros(nodes, np.int64)  # the root's: 0
    overflow, bits_sum = 0, 0
    for h in range(top + 1, nodes):  # from the root down
        n = heap[h]
        bits = min(length[dad[n]] + 1, max_length)
        overflow += length[dad[n]] + 1 > max_length
        length[n] = bits
        if n <= max_code:
            count[bits] += 1
            bits_sum += (key[n] >> DEPTH_BITS) * (bits + (extra[n - base] if n >= base else 0))
    repaired = overflow > 0
    while overflow > 0:  # move leaves up until the deepest fit, as zlib does
        bits = max_length - 1
        while count[bits] == 0:
            bits -= 1
        count[bits] -= 1
        count[bits + 1] += 2
        count[max_length] -= 1
        overflow -= 2
    if repaired:  # the lengths anew, by frequency
        h = nodes
        for bits in range(max_length, 0, -1):
            n = count[bits]
            while n != 0:
                h -= 1
                m = heap[h]
                if m > max_code:
                    continue
                if length[m] != bits:
                    bits_sum += (bits - length[m]) * (key[m] >> DEPTH_BITS)
                    length[m] = bits
                n -= 1
    lens[:] = 0
    lens[: max_code + 1] = length[: max_code + 1]
    return max_code, bits_sum, forced


@_jit
def _scan_tree(lens: np.ndarray, max_code: int, blfreq: np.ndarray) -> None:
    """The code-length codes' frequencies of one tree's lengths (zlib's ``scan_tree``)."""
    prevlen, count = -1, 0
    nextlen = lens[0]
    max_count, min_count = (138, 3) if nextlen == 0 else (7, 4)
    for n in range(max_code + 1):
        curlen = nextlen
        nextlen = lens[n + 1] if n + 1 <= max_code else 0xFFFF  # zlib's guard
        count += 1
        if count < max_count and curlen == nextlen:
            continue
        if count < min_count:
            blfreq[curlen] += count
        elif curlen != 0:
            if curlen != prevlen:
                blfreq[curlen] += 1
            blfreq[16] += 1  # REP_3_6
        elif count <= 10:
            blfreq[17] += 1  # REPZ_3_10
        else:
            blfreq[18] += 1  # REPZ_11_138
        count, prevlen = 0, curlen
        if nextlen == 0:
            max_count, min_count = 138, 3
        elif curlen == nextlen:
            max_count, min_count = 6, 3
        else:
            max_count, min_count = 7, 4


@_jit
def _static_bits(lfreq: np.ndarray, dfreq: np.ndarray) -> int:
    """The symbols' bits under the fixed codes (zlib's ``static_len``; a forced code nets 0)."""
    bits = 0
    for n in range(L_CODES):
        extra = EXTRA_LBITS[n - LITERALS - 1] if n > LITERALS else 0
        bits += lfreq[n] * (STATIC_LLEN[n] + extra)
    for n in range(D_CODES):
        bits += dfreq[n] * (STATIC_DLEN[n] + EXTRA_DBITS[n])
    return bits


@_jit
def zlib1_bits(data: np.ndarray) -> int:
    """``8 * len(zlib.compress(data.tobytes(), 1))`` of uint8 ``data`` (at most MAX_BYTES)."""
    lfreq, dfreq = _symbol_frequencies(data)
    static = _static_bits(lfreq, dfreq)
    llen = np.zeros(L_CODES, np.int64)
    dlen = np.zeros(D_CODES, np.int64)
    # a forced code (zlib keeps two per tree) costs nothing: zlib's opt_len-- per forced code
    lmax, lbits, lforced = _code_lengths(lfreq, L_CODES, EXTRA_LBITS, LITERALS + 1, 15, llen)
    dmax, dbits, dforced = _code_lengths(dfreq, D_CODES, EXTRA_DBITS, 0, 15, dlen)
    blfreq = np.zeros(BL_CODES, np.int64)
    _scan_tree(llen, lmax, blfreq)
    _scan_tree(dlen, dmax, blfreq)
    bllen = np.zeros(BL_CODES, np.int64)
    _, blbits, blforced = _code_lengths(blfreq, BL_CODES, EXTRA_BLBITS, 0, 7, bllen)
    max_blindex = BL_CODES - 1
    while max_blindex >= 3 and bllen[BL_ORDER[max_blindex]] == 0:
        max_blindex -= 1
    dynamic = lbits + dbits + blbits - lforced - dforced - blforced
    dynamic += 3 * (max_blindex + 1) + 5 + 5 + 4  # the code-length code and the three counts
    block = min((dynamic + 3 + 7) >> 3, (static + 3 + 7) >> 3)  # bytes, with the 3-bit header
    n = data.shape[0]
    if n + 4 <= block:  # a stored block: 3 bits to a byte, LEN and NLEN, the bytes
        block = 1 + 4 + n
    return 8 * (2 + block + 4)  # zlib's header and Adler-32


@functools.cache
def _agrees_with_zlib() -> bool:
    """Whether :func:`zlib1_bits` gives :func:`~models.ood.complexity.zlib_bits` on probe images.

    Blank, flat, striped, smooth, sparse and noisy images in grey and colour (stored, fixed and
    dynamic blocks); a zlib that parses otherwise (zlib-ng, say) differs on some of them.
    """
    rng = np.random.default_rng(0)
    ramp = np.arange(28, dtype=np.uint8)
    blob = np.exp(-((ramp[:, None] - 14.0) ** 2 + (ramp[None, :] - 12.0) ** 2) / 40.0) * 220
    sparse = np.where(rng.random(784) < 0.3, rng.integers(0, 256, 784), 0)
    probes = [
        np.zeros(784),
        np.full(784, 7),
        np.tile(ramp * 9, 28),
        blob.ravel(),
        sparse,
        rng.integers(0, 256, 784),
        rng.integers(0, 6, 784),
        rng.integers(0, 256, 32 * 32 * 3),
        np.arange(5),
    ]
    for probe in probes:  # against the served length's own definition (its level included)
        data = np.ascontiguousarray(probe, np.uint8)
        if zlib1_bits(data) != zlib_bits(data):
            return False
    return True


def zlib1_compiles(n_bytes: int) -> bool:
    """Whether :func:`zlib1_bits` serves images of ``n_bytes``.

    It does where numba is installed, the size is one it computes (:data:`MAX_BYTES`) and it
    agrees with this process's zlib.
    """
    return numba is not None and n_bytes <= MAX_BYTES and _agrees_with_zlib()
