"""Compare gzip decompressors (stdlib zlib, isal, zlib-ng) on the real Debian layer blob: MB/s and API fit."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import json
import statistics
import sys
import time
from types import ModuleType

from bench.debian_image import debian_layout

# The unpacker's step: 1 MiB of compressed input per read, at most 1 MiB of output per decompress call.
CHUNK = 1 << 20
ENGINES = (("zlib", "zlib"), ("isal", "isal.isal_zlib"), ("zlib-ng", "zlib_ng.zlib_ng"))


def layer_blob() -> bytes:
    """The compressed bytes of the cached Debian image's only layer."""
    layout, _digest, _size = debian_layout()
    meta: dict[str, str] = json.loads((layout / "tollgate-meta.json").read_text())
    return (layout / "blobs" / "sha256" / meta["layer"].split(":", 1)[1]).read_bytes()


def bounded_decompress(module: ModuleType, blob: bytes, *, digest: bool = False) -> tuple[int, str]:
    """Decompress ``blob`` the way workers/unpack.py does (bounded input and output per step, multi-member).

    Returns (uncompressed bytes, sha256 hex when ``digest``) so each engine is checked to produce the same
    stream; timed runs skip the hash so the figure is the decompressor's alone.
    """
    hasher = hashlib.sha256() if digest else None
    total = 0
    position = 0
    pending = b""
    decomp = None
    while True:
        if decomp is None:
            if not pending:
                pending, position = blob[position : position + CHUNK], position + CHUNK
            if not pending:
                break
            decomp = module.decompressobj(16 + module.MAX_WBITS)
        if not pending:
            pending, position = blob[position : position + CHUNK], position + CHUNK
            if not pending:
                raise RuntimeError("truncated gzip stream")
        out = decomp.decompress(pending, CHUNK)
        total += len(out)
        if hasher is not None:
            hasher.update(out)
        # At the end of a member every unread input byte is in unused_data (3.11's zlib also repeats it in
        # unconsumed_tail, so the two must not be concatenated).
        if decomp.eof:
            pending = decomp.unused_data
            decomp = None
        else:
            pending = decomp.unconsumed_tail
    return total, hasher.hexdigest() if hasher is not None else ""


def api_fits(module: ModuleType) -> str:
    """Return "ok", or what the unpacker needs that the engine lacks (bounded output, eof, multi-member, errors)."""
    first, second = b"A" * 3_000_000, b"second member"
    blob = gzip.compress(first, mtime=0) + gzip.compress(second, mtime=0)
    decomp = module.decompressobj(16 + module.MAX_WBITS)
    out = decomp.decompress(blob, 1000)
    if len(out) > 1000:
        return "max_length is not honoured"
    for attribute in ("unconsumed_tail", "unused_data", "eof"):
        if not hasattr(decomp, attribute):
            return f"no {attribute}"
    total, digest = bounded_decompress(module, blob, digest=True)
    if total != len(first) + len(second) or digest != hashlib.sha256(first + second).hexdigest():
        return "multi-member stream read wrongly"
    try:
        # A gzip header then a deflate block of the reserved type 3: corrupt from its first bit.
        module.decompressobj(16 + module.MAX_WBITS).decompress(blob[:10] + b"\xff" * 50, CHUNK)
    except module.error:
        pass
    else:
        return "corrupt deflate data not reported as module.error"
    return "ok"


def main() -> int:
    """Print MB/s (of uncompressed output) for each importable engine over the same blob."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    blob = layer_blob()
    modules: dict[str, ModuleType] = {}
    for label, name in ENGINES:
        try:
            modules[label] = importlib.import_module(name)
        except ImportError:
            print(f"{label:8s} not installed (pip install {label})")
    reference = bounded_decompress(modules["zlib"], blob, digest=True)
    for label, module in modules.items():
        if bounded_decompress(module, blob, digest=True) != reference:
            print(f"{label}: output differs from zlib's", file=sys.stderr)
            return 1
    size = reference[0]
    print(
        f"Debian bookworm layer: {len(blob) / 1e6:.1f} MB gzip -> {size / 1e6:.1f} MB; same bytes, same process, "
        f"{args.runs} runs per engine (interleaved), 1 MiB bounded steps, output identical to zlib's"
    )
    times: dict[str, list[float]] = {label: [] for label in modules}
    for _ in range(args.runs):
        for label, module in modules.items():  # round-robin, so background load hits every engine alike
            start = time.perf_counter()
            bounded_decompress(module, blob)
            times[label].append(time.perf_counter() - start)
    base = min(times["zlib"])
    for label, module in modules.items():
        version = module.ZLIB_RUNTIME_VERSION if label == "zlib" else _version(label)
        best, median = min(times[label]), statistics.median(times[label])
        print(
            f"{label:8s} {version:8s} best {size / 1e6 / best:7.1f} MB/s  median {size / 1e6 / median:7.1f} MB/s  "
            f"x{base / best:4.2f} vs zlib (best)  api: {api_fits(module)}"
        )
    return 0


def _version(distribution: str) -> str:
    from importlib import metadata

    return metadata.version(distribution)


if __name__ == "__main__":
    sys.exit(main())
