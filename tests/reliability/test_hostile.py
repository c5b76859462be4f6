"""The hostile corpus (issue 9, "Must show" 1): every variant at once, one ingest, every outcome.

One home holds the session street and all of ``corpus.build_corpus``'s
variants in its inbox. ``tests/reliability/driver.py HOME`` ingests it as a
child process (a nesting bomb or a FIFO must not hang or kill this process),
with small limits and Python logging at DEBUG on its stderr; a second run then
lands the file that was still being written. The test checks, and reports
together in one table: each variant's expected outcome, that every account
balances, that every landed delivery is accounted, that the street's own
deliveries loaded completely, that nothing was accounted twice, and that no
marker value of a hostile row (nor a raw control character of a file name, nor
a landed path) appears in the child's output, an account, a quarantine row or
a report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from catalog.settings import Settings
from tests.reliability.conftest import fresh_home
from tests.reliability.corpus import (
    LIMITS,
    Expect,
    StillWriting,
    Variant,
    build_corpus,
    clean_markers_absent,
    marker_needles,
    plant,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "tests" / "reliability" / "driver.py"
RUN_TIMEOUT_S = 420  # a loaded 2-core CI box; a hang still ends the test

# imported by the child at start-up (PYTHONPATH): every logger at DEBUG on stderr, but
# for libraries that only chatter about themselves at that level
SITECUSTOMIZE = """\
import logging, os, sys
if os.environ.get("HOSTILE_DEBUG_LOG"):
    logging.basicConfig(
        level=logging.DEBUG,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in ("great_expectations", "httpcore", "asyncio", "faker", "matplotlib"):
        logging.getLogger(name).setLevel(logging.INFO)
"""


# ------------------------------------------------------------------ the child
@dataclass
class Run:
    rc: int | None
    output: bytes
    seconds: float
    timed_out: bool = False


def child_env(home: Path, tmp: Path) -> dict[str, str]:
    """The driver's environment: small limits, DEBUG logging (via a sitecustomize)."""
    site = tmp / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETHUB_")}
    env.update(LIMITS)
    env["STREETHUB_HOME"] = str(home)
    env["HOSTILE_DEBUG_LOG"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")])
    return env


def drive(home: Path, env: dict[str, str]) -> Run:
    """``driver.py HOME`` in its own process group; killed as a group on timeout."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), str(home)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
        return Run(proc.returncode, out, time.monotonic() - start)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return Run(None, out, time.monotonic() - start, timed_out=True)


# ------------------------------------------------------------------ the lake
@dataclass
class Lake:
    deliveries: dict[str, dict] = field(default_factory=dict)  # delivery_id -> row
    accounts: list[dict] = field(default_factory=list)
    stages: list[dict] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)

    def stage_of(self, delivery_id: str) -> list[dict]:
        return [s for s in self.stages if s["delivery_id"] == delivery_id and s["stage"] != "raw"]

    def quarantined(self, delivery_id: str, stage: str = "raw") -> list[dict]:
        return [
            q
            for q in self.quarantine
            if q["delivery_id"] == delivery_id and (q["stage"] or "raw") == stage
        ]


def _rows(con, sql: str) -> list[dict]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def read_lake(settings: Settings) -> Lake:
    from lakehouse.lake import open_lake, tables_in

    lake = Lake()
    try:
        with open_lake(settings, read_only=True) as con:
            have = tables_in(con)
            if ("landing", "deliveries") in have:
                for r in _rows(con, "SELECT * FROM landing.deliveries"):
                    lake.deliveries[r["delivery_id"]] = r
            if ("landing", "delivery_accounts") in have:
                lake.accounts = _rows(
                    con, "SELECT * FROM landing.delivery_accounts ORDER BY accounted_at"
                )
            if ("landing", "stage_accounts") in have:
                lake.stages = _rows(con, "SELECT * FROM landing.stage_accounts")
            if ("quarantine", "rows") in have:
                lake.quarantine = _rows(
                    con,
                    "SELECT delivery_id, file_name, stage, source_row, field, check_name, "
                    "reason, value_masked FROM quarantine.rows",
                )
    except Exception as exc:  # a lake the run could not create is reported, not raised
        lake.accounts = [{"error": f"{type(exc).__name__}: {exc}"}]
    return lake


# ------------------------------------------------------------------ linking accounts to variants
def shown_forms(name: str) -> set[str]:
    """The ways a file name may be written in a reason: as given, or escaped."""
    forms = {name, name.encode("unicode_escape").decode("ascii")}
    try:
        from catalog.errors import shown  # LANDING's escaping, when it is there
    except ImportError:
        pass
    else:
        forms.add(shown(name))
    return forms


def accounts_by_variant(lake: Lake, variants: list[Variant]) -> dict[str, list[dict]]:
    """Each variant's accounts: through landing.deliveries' file name, else the reason."""
    by_file = {(v.dept, v.dataset, v.file_name): v.name for v in variants}
    forms = {v.name: shown_forms(v.file_name) for v in variants}
    out: dict[str, list[dict]] = defaultdict(list)
    for acc in lake.accounts:
        if "error" in acc:
            continue
        d = lake.deliveries.get(acc["delivery_id"])
        if d is not None:
            name = by_file.get((d["dept"], d["dataset"], d["file_name"]))
            if name:
                out[name].append(acc)
            continue
        text = " ".join(str(acc.get(k) or "") for k in ("reason", "notes", "delivery_id"))
        for v in variants:
            same = (v.dept, v.dataset) == (acc["dept"], acc["dataset"])
            if same and any(f in text for f in forms[v.name]):
                out[v.name].append(acc)
                break
    return out


def delivered(lake: Lake, v: Variant) -> bool:
    return any(
        (d["dept"], d["dataset"], d["file_name"]) == (v.dept, v.dataset, v.file_name)
        for d in lake.deliveries.values()
    )


# ------------------------------------------------------------------ one variant's outcome
def got_text(lake: Lake, accs: list[dict]) -> str:
    if not accs:
        return "no account"
    parts = []
    for a in accs:
        text = f"{a['status']}"
        if a["reason"]:  # past the "file …, dataset …:" preamble, which the table names
            reason = a["reason"]
            if reason.startswith("file ") and ": " in reason:
                reason = reason.split(": ", 1)[1]
            text += f" '{reason[:110]}'"
        text += f" read={a['rows_read']} loaded={a['rows_loaded']} q={a['rows_quarantined']}"
        reasons = sorted({(q["reason"] or "")[:60] for q in lake.quarantined(a["delivery_id"])})
        if reasons:
            text += f" raw-q: {'; '.join(reasons[:3])}"
        for s in lake.stage_of(a["delivery_id"]):
            text += (
                f" staged in={s['rows_in']} out={s['rows_out']} q={s['rows_quarantined']}"
                f" skipped={s.get('rows_skipped')}"
            )
        parts.append(text)
    return " || ".join(parts)


def has_phrase(text: str | None, phrases: tuple[str, ...]) -> bool:
    return not phrases or any(p.lower() in (text or "").lower() for p in phrases)


def miss(
    exp: Expect, accs: list[dict], lake: Lake, original: dict | None, file_name: str = ""
) -> str | None:
    """Why ``accs`` do not meet ``exp`` (None: they do)."""
    if len(accs) != 1:
        return f"{len(accs)} accounts, expected 1"
    a = accs[0]
    if exp.status == "failed":
        if a["status"] != "failed":
            return "not failed"
        if exp.refused and "refused" not in (a["reason"] or "").lower():
            return "reason does not say refused"
        if not has_phrase(a["reason"], exp.phrases):
            return "reason lacks the phrase"
        if a["rows_loaded"]:
            return "failed delivery loaded rows"
        if file_name and not any(f in (a["reason"] or "") for f in shown_forms(file_name)):
            return "reason does not name the file"
        return None
    if a["status"] != "loaded":
        return f"status {a['status']}"
    if exp.rows_read is not None and a["rows_read"] != exp.rows_read:
        return f"rows_read {a['rows_read']} != {exp.rows_read}"
    n, q = exp.quarantined, a["rows_quarantined"]
    if (exp.exact and q != n) or (not exp.exact and q < n):
        return f"quarantined {q}, expected {n}"
    if n:
        hits = [
            x for x in lake.quarantined(a["delivery_id"]) if has_phrase(x["reason"], exp.phrases)
        ]
        if (exp.exact and len(hits) != n) or len(hits) < n:
            return f"{len(hits)} quarantine rows say {'/'.join(exp.phrases)}, expected {n}"
        rows = sorted(x["source_row"] for x in hits)
        if exp.at and not set(exp.at) <= set(rows):
            return f"quarantined at source rows {rows}, expected {list(exp.at)}"
    if exp.redelivery_of:
        return miss_redelivery(exp, a, lake, original)
    return None


def miss_redelivery(exp: Expect, a: dict, lake: Lake, original: dict | None) -> str | None:
    if original is None:
        return "the earlier delivery has no account"
    before = lake.stage_of(original["delivery_id"])
    now = lake.stage_of(a["delivery_id"])
    if len(before) != 1 or len(now) != 1:
        return f"stage accounts: earlier {len(before)}, re-delivery {len(now)}"
    b, s = before[0], now[0]
    staged_before = b["rows_out"] + (b.get("rows_skipped") or 0)
    want_skipped = staged_before - exp.changed
    skipped = s.get("rows_skipped") or 0
    if skipped != want_skipped:
        return f"skipped {skipped}, expected {want_skipped} (every row staged before)"
    if s["rows_out"] + s["rows_quarantined"] != b["rows_quarantined"] + exp.changed:
        return (
            f"staged out+quarantined {s['rows_out']}+{s['rows_quarantined']}, expected "
            f"{b['rows_quarantined']} (as before) + {exp.changed} changed"
        )
    return None


def check_variant(v: Variant, run1: Lake, run2: Lake, acc1: dict, acc2: dict) -> str | None:
    exp = v.expect
    original = None
    if exp.redelivery_of:
        key = (v.dept, v.dataset, exp.redelivery_of)
        ids = [
            i
            for i, d in run2.deliveries.items()
            if (d["dept"], d["dataset"], d["file_name"]) == key
        ]
        originals = [a for a in run2.accounts if a.get("delivery_id") in ids]
        original = originals[0] if len(originals) == 1 else None
    if exp.status == "waiting":
        if acc1.get(v.name) or delivered(run1, v):
            return "landed in the run before it settled"
        why = miss(Expect("loaded", rows_read=exp.rows_read), acc2.get(v.name, []), run2, None)
        return f"next run: {why}" if why else None
    accs = acc2.get(v.name, [])
    why = miss(exp, accs, run2, original, v.file_name)
    if why is None and len(acc1.get(v.name, [])) != len(acc2.get(v.name, [])):
        return "accounted again by the second run"
    return why


# ------------------------------------------------------------------ the whole lake
def balance_problems(lake: Lake) -> list[str]:
    out = []
    for a in lake.accounts:
        if "error" in a:
            out.append(f"lake unreadable: {a['error']}")
            continue
        if a["rows_read"] != a["rows_loaded"] + a["rows_quarantined"]:
            out.append(f"{a['delivery_id']}: raw account does not balance")
        if a["status"] == "loaded":
            q = len(lake.quarantined(a["delivery_id"]))
            if q != a["rows_quarantined"]:
                out.append(
                    f"{a['delivery_id']}: {q} raw quarantine rows, account says "
                    f"{a['rows_quarantined']}"
                )
            stages = lake.stage_of(a["delivery_id"])
            if len(stages) != 1:
                out.append(f"{a['delivery_id']}: {len(stages)} staged accounts")
    for s in lake.stages:
        skipped = s.get("rows_skipped") or 0
        if s["rows_in"] != s["rows_out"] + s["rows_quarantined"] + skipped:
            out.append(f"{s['delivery_id']}: staged account does not balance")
    loaded = {a["delivery_id"]: a for a in lake.accounts if a.get("status") == "loaded"}
    for s in lake.stages:
        a = loaded.get(s["delivery_id"])
        if s["stage"] != "raw" and a and s["rows_in"] != a["rows_loaded"]:
            out.append(f"{s['delivery_id']}: staged rows_in {s['rows_in']} != raw rows_loaded")
    accounted = {a.get("delivery_id") for a in lake.accounts}
    for d in lake.deliveries.values():
        if d["delivery_id"] not in accounted:
            out.append(f"{d['delivery_id']}: landed, never accounted")
    return out


def street_problems(lake: Lake, manifest: dict, home: Path) -> list[str]:
    """The street's own deliveries loaded completely (file deliveries row for row)."""
    import polars as pl

    from departments.simulate import sim_dir_for

    out = []
    by_name = defaultdict(list)
    for a in lake.accounts:
        d = lake.deliveries.get(a.get("delivery_id"))
        if d:
            by_name[(d["dept"], d["dataset"], d["file_name"])].append(a)
    for dept, datasets in manifest["departments"].items():
        for code, info in datasets.items():
            if info["kind"] in ("sql_db", "http_api"):
                accs = [
                    a for a in lake.accounts if (a.get("dept"), a.get("dataset")) == (dept, code)
                ]
                if not any(a["status"] == "loaded" and a["rows_loaded"] for a in accs):
                    out.append(f"{dept}.{code}: pulled source not loaded")
                continue
            for file_name, rows in info["rows"].items():
                accs = by_name.get((dept, code, file_name), [])
                records = info["records"][file_name]
                truth = sim_dir_for(home) / "truth" / dept / code
                defects = pl.read_parquet(truth / "defects.parquet")
                broken = defects.filter(
                    (pl.col("_file") == file_name) & (pl.col("kind") == "broken_line")
                ).height
                if len(accs) != 1 or accs[0]["status"] != "loaded":
                    out.append(
                        f"{dept}/{file_name}: street delivery not loaded ({len(accs)} accounts)"
                    )
                elif accs[0]["rows_read"] != rows or accs[0]["rows_loaded"] != records - broken:
                    a = accs[0]
                    out.append(
                        f"{dept}/{file_name}: read {a['rows_read']}/{rows}, "
                        f"loaded {a['rows_loaded']}/{records - broken}"
                    )
    return out


def outside_problems(variants: list[Variant], home: Path) -> list[str]:
    """A file outside the inbox, reached by a link, was never copied into landing."""
    import hashlib

    landed = {  # landed copies are encrypted, each named by its delivered bytes' SHA-256
        p.name.split(".", 1)[0] for p in (home / "landing").rglob("*") if p.is_file()
    }
    out = []
    inbox = (home / "inbox").resolve()
    for v in variants:
        path = v.path(home)
        target = path.resolve()
        if not path.is_symlink() or target.is_relative_to(inbox) or not target.is_file():
            continue
        if hashlib.sha256(target.read_bytes()).hexdigest() in landed:
            out.append(f"{v.name}: the link's target was copied into landing")
    return out


def leak_problems(outputs: list[bytes], lakes: list[Lake], home: Path) -> list[str]:
    needles = marker_needles()
    out = []
    for i, data in enumerate(outputs, start=1):
        for n in needles:
            if n in data:
                out.append(f"run {i} output holds a marker value ({len(n)} bytes)")
        if b"\x1b" in data:
            out.append(f"run {i} output holds a raw ESC (unescaped file name)")
        if "\u202e".encode() in data:
            out.append(f"run {i} output holds a raw U+202E (unescaped file name)")
        if any(line.startswith(b"FORGED LOG LINE") for line in data.splitlines()):
            out.append(f"run {i} output: a file name forged a log line")
    texts: list[tuple[str, str]] = []
    for lake in lakes:
        for a in lake.accounts:
            texts += [
                ("account reason", a.get("reason") or ""),
                ("account notes", a.get("notes") or ""),
            ]
        for q in lake.quarantine:
            for k in ("reason", "value_masked", "field", "check_name"):
                texts.append((f"quarantine {k}", q.get(k) or ""))
    for where, text in texts:
        raw = text.encode("utf-8", "surrogateescape")
        if any(n in raw for n in needles):
            out.append(f"{where} holds a marker value")
        if "\x1b" in text or "\u202e" in text or "\nFORGED" in text:
            out.append(f"{where} holds an unescaped file name")
        if str(home) in text or "/landing/" in text:
            out.append(f"{where} holds an absolute or landed path")
    if not (home / "reports" / "quality.html").is_file():
        out.append("no HTML report under reports/ (the scorecard did not run)")
    for folder in ("reports", "audit"):
        for path in (home / folder).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                if any(n in data for n in needles):
                    out.append(f"{folder}/{path.name} holds a marker value")
                if b"\x1b" in data or "\u202e".encode() in data:
                    out.append(f"{folder}/{path.name} holds an unescaped file name")
    return sorted(set(out))


# ------------------------------------------------------------------ the test
def table(rows: list[tuple[str, str, str]]) -> str:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows)


def test_hostile_corpus(reliability_street, tmp_path):
    started = time.monotonic()
    _, manifest = reliability_street
    home = tmp_path / "home"
    settings = fresh_home(reliability_street, home)
    variants = build_corpus(home, manifest)
    assert len(variants) >= 40
    assert not clean_markers_absent(home), "a marker value occurs in the street itself"
    plant(home, variants)
    env = child_env(home, tmp_path)

    # the file still being written grows during the first run, is finished after it
    writers = [StillWriting(v.path(home)).start() for v in variants if not v.settled]
    try:
        run1 = drive(home, env)
    finally:
        for w in writers:
            w.stop()
    lake1 = read_lake(settings)
    run2 = drive(home, env)  # lands it (waiting for it to settle if need be)
    lake2 = read_lake(settings)

    problems: list[tuple[str, str, str]] = []
    for i, run in enumerate((run1, run2), start=1):
        tail = run.output.decode("utf-8", "replace")[-600:].replace("\n", " / ")
        if run.timed_out:
            problems.append((f"run {i}", "finishes", f"killed after {RUN_TIMEOUT_S} s: {tail}"))
        elif run.rc != 0 or b"ESCAPED" in run.output:
            problems.append((f"run {i}", "rc 0, nothing ESCAPED", f"rc {run.rc}: {tail}"))

    acc1 = accounts_by_variant(lake1, variants)
    acc2 = accounts_by_variant(lake2, variants)
    for v in variants:
        why = check_variant(v, lake1, lake2, acc1, acc2)
        if why:
            got = got_text(lake2, acc2.get(v.name, []))
            problems.append((v.name, v.expect.describe(), f"{why}: {got}"))
    for p in balance_problems(lake2):
        problems.append(("accounts", "balance, every landed delivery accounted", p))
    for p in street_problems(lake2, manifest, home):
        problems.append(("street", "the good deliveries loaded completely", p))
    for p in leak_problems([run1.output, run2.output], [lake1, lake2], home):
        problems.append(("leaks", "no marker, raw control char or path", p))
    for p in outside_problems(variants, home):
        problems.append(("refused", "a refused entry is never read", p))

    report = (
        f"{len(variants)} variants; runs {run1.seconds:.0f} s + {run2.seconds:.0f} s; "
        f"test {time.monotonic() - started:.0f} s"
    )
    outcomes = [
        (v.name, v.expect.describe(), got_text(lake2, acc2.get(v.name, []))) for v in variants
    ]
    (tmp_path / "hostile_report.txt").write_text(
        f"{report}\n\nmissed\n{table(problems) if problems else 'none'}\n\n"
        f"every variant\n{table(outcomes)}\n",
        encoding="utf-8",
    )
    (tmp_path / "run1.log").write_bytes(run1.output)
    (tmp_path / "run2.log").write_bytes(run2.output)
    assert not problems, f"{len(problems)} expectation(s) missed ({report}):\n" + table(
        [("variant", "expected", "got"), *problems]
    )
    print(report, json.dumps({"variants": len(variants)}))
