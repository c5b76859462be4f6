"""Peak memory of the streaming CSV and JSON Lines readers against the file's size.

Run through ``python -m bench readers`` (which calls :func:`main`) or
``python -m bench.readers``. Files are generated under a temporary folder (a block of
rows repeated, so making 500 MB takes seconds) and removed afterwards:

- a CSV (GBK, the health department's dataset) and a JSON Lines file (IoT sensor
  readings) of about ``BIG_MB`` MB;
- each with one ``LINE_MB`` MB record among ordinary rows — read under the default
  ``max_record_bytes`` (the record is quarantined as too large, skipped without
  being held) and under a limit above it (the record loads).

Each read runs in a child process that reads every batch as ``raw.load_delivery``
does (without the lake); its peak RSS comes from ``os.wait4`` (the child's own
``ru_maxrss``), next to a child that only imports the same modules (the baseline).
Writes bench/results/readers.json and prints a table.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from bench._spawn import run_measured

BIG_MB = 500
LINE_MB = 64
RESULTS = Path(__file__).parent / "results" / "readers.json"
CHILD_FLAG = "--reader-child"
MAKE_FLAG = "--make-files"
DATASETS = {"csv": "wjw.family_doctor_contracts", "jsonl": "iot.sensor_readings"}


def _dataset(kind: str):
    from catalog.loader import load_catalogue

    return load_catalogue().dataset(DATASETS[kind])[1]


def _csv_row(names: list[str], i: int) -> str:
    return ",".join(f"{n}{i % 997}" if j else f"{i:018d}" for j, n in enumerate(names))


def _write(path: Path, head: bytes, block: bytes, target: int, middle=None) -> int:
    """head, then ``block`` repeated to about ``target`` bytes, ``middle()``'s pieces halfway."""
    reps = max(1, target // max(1, len(block)))
    with open(path, "wb") as fh:
        fh.write(head)
        for i in range(reps):
            if i == reps // 2 and middle:
                for piece in middle():
                    fh.write(piece)
            fh.write(block)
    return path.stat().st_size


def _long(prefix: bytes, unit: bytes, size: int, suffix: bytes):
    """A record of about ``size`` bytes, written as pieces of 1 MiB (never held whole)."""

    def pieces():
        yield prefix
        whole, rest = divmod(size, 2**20)
        piece = unit * (2**20 // len(unit))
        for _ in range(whole):
            yield piece
        yield unit * (rest // len(unit))
        yield suffix

    return pieces


def make_files(folder: Path, big_mb: float, line_mb: float) -> list[dict]:
    """The files to read: (kind, label, path, size, the largest record's bytes)."""
    csv_ds = _dataset("csv")
    encoding = csv_ds.delivery.encoding or "utf-8"
    names = [f.source_name for f in csv_ds.fields]
    head = (",".join(names) + "\r\n").encode(encoding)
    rows = "".join(_csv_row(names, i) + "\r\n" for i in range(2000)).encode(encoding)
    line_bytes = int(line_mb * 1024 * 1024)
    cells = _csv_row(names, 0).split(",")
    long_row = _long(
        (cells[0] + ",").encode(encoding),
        "长".encode(encoding),  # two bytes a character in GBK
        line_bytes,
        ("," + ",".join(cells[2:]) + "\r\n").encode(encoding),
    )
    readings = "".join(
        json.dumps(
            {
                "device_id": f"SN{i % 500:05d}",
                "ts": "2026-11-22T00:00:00+08:00",
                "metric": "pm25",
                "value": i % 300 / 10,
                "unit": "μg/m³",
                "battery": 80,
            },
            ensure_ascii=False,
        )
        + "\n"
        for i in range(2000)
    ).encode()
    long_line = _long(b'{"device_id": "SN00001", "metric": "', b"x", line_bytes, b'"}\n')
    big = int(big_mb * 1024 * 1024)
    out = []
    for kind, label, h, block, target, middle in (
        ("csv", "big", head, rows, big, None),
        ("csv", "one long row", head, rows, len(rows) * 4, long_row),
        ("jsonl", "big", b"", readings, big, None),
        ("jsonl", "one long line", b"", readings, len(readings) * 4, long_line),
    ):
        path = folder / f"{kind}_{label.replace(' ', '_')}.{kind}"
        size = _write(path, h, block, target, middle)
        largest = line_bytes if middle else len(block.split(b"\n", 1)[0])
        out.append(
            {"kind": kind, "file": label, "path": str(path), "bytes": size, "record": largest}
        )
    return out


def _child(kind: str, path: str, max_record_bytes: int) -> None:
    """Read every batch of one file and print what came of it (runs in the child)."""
    from catalog.settings import Settings
    from pipelines.connectors import read_batches

    ds = _dataset(kind)
    settings = Settings(max_record_bytes=max_record_bytes)
    if path == "-":  # the baseline: the same imports, nothing read
        print(json.dumps({"rows": 0, "quarantined": 0, "seconds": 0.0}))
        return
    started = time.perf_counter()
    rows = quarantined = 0
    for parsed in read_batches(Path(path), ds, settings):
        rows += parsed.frame.height
        quarantined += len(parsed.problems)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "quarantined": quarantined, "seconds": round(seconds, 2)}))


def _in_child(args: list[str]) -> tuple[object, float]:
    """Run this module in a child process: (what it printed last, as JSON; its peak RSS MB).

    The peak is the child's own ``ru_maxrss`` from ``os.wait4``, the child launched apart
    (:mod:`bench._spawn`: none of this process's high-water mark in it).
    """
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "bench.readers", *args]
    child = run_measured(cmd, "the reader benchmark's child", cwd=root)
    return json.loads(child.out.strip().splitlines()[-1]), round(child.peak_mb, 1)


def _run(kind: str, path: str, max_record_bytes: int) -> dict:
    """One reading child: its result and its peak RSS."""
    result, peak = _in_child([CHILD_FLAG, kind, path, str(max_record_bytes)])
    return {**result, "peak_rss_mb": peak}


def main(big_mb: float = BIG_MB, line_mb: float = LINE_MB) -> dict:
    from catalog.settings import Settings

    default_limit = Settings().max_record_bytes  # the parent imports little: see _in_child
    figures: dict = {"default_max_record_bytes": default_limit, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench_readers_") as tmp:
        started = time.perf_counter()
        files = _in_child([MAKE_FLAG, tmp, str(big_mb), str(line_mb)])[0]
        figures["generated_seconds"] = round(time.perf_counter() - started, 1)
        base = {k: _run(k, "-", default_limit)["peak_rss_mb"] for k in DATASETS}
        figures["baseline_rss_mb"] = base
        for f in files:
            limits = [default_limit]
            if f["record"] > default_limit:
                limits.append(f["record"] * 2)  # also read it with the long record allowed
            for limit in limits:
                r = _run(f["kind"], str(f["path"]), limit)
                figures["runs"].append(
                    {
                        "reader": f["kind"],
                        "file": f["file"],
                        "file_mb": round(f["bytes"] / 2**20, 1),
                        "largest_record_mb": round(f["record"] / 2**20, 2),
                        "max_record_mb": round(limit / 2**20, 1),
                        **r,
                        "over_baseline_mb": round(r["peak_rss_mb"] - base[f["kind"]], 1),
                    }
                )
    print(
        f"peak RSS of the streaming readers (child processes; baseline after imports: "
        f"CSV {base['csv']} MB, JSONL {base['jsonl']} MB)"
    )
    print(
        f"{'reader':<7}{'file':<15}{'file MB':>9}{'record MB':>11}{'limit MB':>10}"
        f"{'rows':>10}{'quar.':>7}{'s':>7}{'peak MB':>9}{'+base MB':>10}"
    )
    for r in figures["runs"]:
        print(
            f"{r['reader']:<7}{r['file']:<15}{r['file_mb']:>9}{r['largest_record_mb']:>11}"
            f"{r['max_record_mb']:>10}{r['rows']:>10,}{r['quarantined']:>7}{r['seconds']:>7}"
            f"{r['peak_rss_mb']:>9}{r['over_baseline_mb']:>10}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    if CHILD_FLAG in sys.argv:
        i = sys.argv.index(CHILD_FLAG)
        _child(sys.argv[i + 1], sys.argv[i + 2], int(sys.argv[i + 3]))
    elif MAKE_FLAG in sys.argv:
        i = sys.argv.index(MAKE_FLAG)
        made = make_files(Path(sys.argv[i + 1]), float(sys.argv[i + 2]), float(sys.argv[i + 3]))
        print(json.dumps(made))
    else:
        main()
