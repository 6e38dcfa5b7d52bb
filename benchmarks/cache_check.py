"""The cost of deciding whether a decoded cache is stale: `pipeline.cache.fingerprint` (one stat per image) over a
competition's test folder, against the same digest without the change time (how it was before); results to
benchmarks/results/*.json.

    python benchmarks/cache_check.py --dataset DIR [--repeats 3]

Run once right after `echo 3 > /proc/sys/vm/drop_caches` (root) for the figure of a cold file system as well.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

import torch

from pipeline.cache import fingerprint
from pipeline.layout import check_test, id_sort_key
from record import write_result


def size_and_mtime(folder: Path, ids: list[str]) -> str:
    """The fingerprint as it was: size and modification time only."""
    digest, base = hashlib.sha256(), os.fspath(folder)
    for image_id in ids:
        info = os.stat(f"{base}/{image_id}.png")
        digest.update(f"{image_id}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ids = sorted(check_test(args.dataset), key=id_sort_key)
    seconds: dict[str, list[float]] = {"fingerprint": [], "size_and_mtime": []}
    for _ in range(args.repeats):  # alternated, so both see the same cache state
        for name, digest in (("fingerprint", fingerprint), ("size_and_mtime", size_and_mtime)):
            started = time.perf_counter()
            digest(args.dataset / "test", ids)
            seconds[name].append(round(time.perf_counter() - started, 3))
    numbers = {"images": len(ids), "seconds": seconds}
    print(numbers)
    print(f"wrote {write_result('cache_check', torch.device('cpu'), numbers)}")


if __name__ == "__main__":
    main()
