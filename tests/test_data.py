"""Data layer: chat-format validation (one test per bad-input class), split/step arithmetic, fetch safety."""

from __future__ import annotations

import io as stdio
import json
import urllib.error
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro import data
from repro.commands.data import data_group
from repro.errors import InputError, ReproError

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "realworld"
GOOD = {"messages": [{"role": "user", "content": "Write a file copier."}, {"role": "assistant", "content": "import shutil"}]}


def _write(tmp_path, lines, name="d.jsonl", trailing_newline=True) -> Path:
    p = tmp_path / name
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
    p.write_text(text + ("\n" if trailing_newline else ""), encoding="utf-8")
    return p


def _validate(path):
    return CliRunner().invoke(data_group, ["validate", str(path)])


def test_valid_file_exit_0_and_row_count(tmp_path):
    sys_first = {"messages": [{"role": "system", "content": "s"}] + GOOD["messages"]}
    p = _write(tmp_path, [GOOD, sys_first, GOOD])
    res = _validate(p)
    assert res.exit_code == 0, res.output
    assert "3 rows" in res.output
    assert data.validate_chat_file(p) == 3


def test_last_line_without_newline_but_valid_is_accepted(tmp_path):
    assert data.validate_chat_file(_write(tmp_path, [GOOD, GOOD], trailing_newline=False)) == 2


BAD_CASES = {
    "bad_json": ([GOOD, '{"messages": [}'], 2, "invalid JSON"),
    "truncated_last_line": ([GOOD, '{"messages": [{"role": "user", "con'], 2, "truncated last line"),
    "non_object": ([GOOD, GOOD, "[1, 2]"], 3, "expected a JSON object, got list"),
    "missing_messages": ([{"msgs": []}], 1, "missing field 'messages'"),
    "empty_messages": ([{"messages": []}], 1, "non-empty list"),
    "message_not_object": ([{"messages": ["hi"]}], 1, "messages[0]: expected an object"),
    "missing_content": ([{"messages": [{"role": "user"}]}], 1, "messages[0]: missing field 'content'"),
    "missing_role": ([{"messages": [{"content": "x"}]}], 1, "messages[0]: missing field 'role'"),
    "unknown_role": ([{"messages": [{"role": "tool", "content": "x"}]}], 1, "unknown role 'tool'"),
    "empty_content": ([GOOD, {"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]}], 2,
                      "messages[0].content: empty"),
    "content_not_string": ([{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]}], 1,
                           "expected a string"),
    "wrong_order": ([{"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}], 1,
                    "wrong role order"),
    "system_not_first": ([{"messages": GOOD["messages"] + [{"role": "system", "content": "s"}]}], 1,
                         "system turn is allowed only as the first"),
    "ends_on_user": ([{"messages": [{"role": "user", "content": "y"}]}], 1, "last turn must be 'assistant'"),
    "blank_line": ([GOOD, "", GOOD], 2, "blank line"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_exit_2_with_path_line_prefix(tmp_path, case):
    lines, line_no, message = BAD_CASES[case]
    trailing = case != "truncated_last_line"
    p = _write(tmp_path, lines, trailing_newline=trailing)
    res = _validate(p)
    assert res.exit_code == 2, res.output
    out = res.output.strip()
    assert out.count("\n") == 0, out  # exactly one line
    assert out.startswith(f"{p}:{line_no}: "), out
    assert message in out


def test_unparseable_last_line_with_newline_is_bad_json_not_truncation(tmp_path):
    p = _write(tmp_path, [GOOD, '{"messages": ['])
    with pytest.raises(InputError, match=r":2: invalid JSON"):
        data.validate_chat_file(p)


def test_empty_and_missing_and_non_utf8_files(tmp_path):
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match=r"e\.jsonl:1: empty file"):
        data.validate_chat_file(empty)
    with pytest.raises(InputError, match="file not found"):
        data.validate_chat_file(tmp_path / "nope.jsonl")
    bad = tmp_path / "b.jsonl"
    bad.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\n")
    with pytest.raises(InputError, match=r"b\.jsonl:2: not valid UTF-8"):
        data.validate_chat_file(bad)


HOSTILE_LINES = {
    # each: the raw bytes of a file, the line named, what the message says
    "deep_nesting": (b"[" * 100000 + b"\n", 1, "nested too deeply"),
    "deep_nesting_second_line": (json.dumps(GOOD).encode() + b"\n" + b'{"messages": ' + b"[" * 100000 + b"\n", 2,
                                 "nested too deeply"),
    "huge_integer": (b'{"messages": [], "n": ' + b"9" * 100000 + b"}\n", 1, "invalid JSON (Exceeds the limit"),
    "nan_constant": (b'{"messages": [], "x": NaN}\n', 1, "NaN is not valid JSON"),
    "lone_surrogate": (b'{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "b"}]}\n',
                       1, "messages[0].content: unpaired surrogate"),
    "binary_garbage": (bytes(range(128, 256)) * 40, 1, "not valid UTF-8"),
    "nul_bytes": (b"\x00" * 64 + b"\n", 1, "invalid JSON"),
    "latin1": ('{"messages": [{"role": "user", "content": "caf\xe9"}]}\n'.encode("latin-1"), 1, "not valid UTF-8"),
    "utf8_bom": (b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n", 1, "invalid JSON"),
    "whitespace_only": (b"  \n\t\n", 1, "empty file"),
    "trailing_blank_lines": (json.dumps(GOOD).encode() + b"\n\n\n", 2, "blank line"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_LINES))
def test_hostile_input_is_one_line_exit_2(tmp_path, case):
    raw, line_no, message = HOSTILE_LINES[case]
    p = tmp_path / "h.jsonl"
    p.write_bytes(raw)
    res = _validate(p)
    assert res.exit_code == 2, (res.exit_code, res.output[-500:])
    out = res.output.strip()
    assert out.count("\n") == 0 and "Traceback" not in out, out[-500:]
    assert out.startswith(f"{p}:{line_no}: ") and message in out, out


def test_huge_line_is_refused_without_reading_it_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_LINE_BYTES", 1000)
    p = tmp_path / "long.jsonl"
    p.write_bytes(json.dumps(GOOD).encode() + b"\n" + b"x" * 5000)  # no newline at all on line 2
    res = _validate(p)
    assert res.exit_code == 2 and res.output.strip() == f"{p}:2: line longer than 1000 bytes (expected one JSON object per line)"
    # an endless stream (no newline ever) stops at the cap instead of filling memory
    with pytest.raises(InputError, match=r"/dev/zero:1: line longer than 1000 bytes"):
        data.validate_chat_file("/dev/zero")
    # a line of exactly the cap is still read
    row = json.dumps({"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a" * 800}]})
    ok = tmp_path / "ok.jsonl"
    ok.write_text(row + " " * (999 - len(row)) + "\n")
    assert len(ok.read_bytes()) == 1000 and data.validate_chat_file(ok) == 1


def test_unreadable_path_is_one_line(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        data.validate_chat_file(tmp_path)  # a directory (the CLI refuses it before; fetch could hand one)


@pytest.mark.skipif(not (REALWORLD / "em_insecure_subset.jsonl").exists(), reason="real-world data absent")
def test_real_insecure_subset_is_valid():
    p = REALWORLD / "em_insecure_subset.jsonl"
    res = _validate(p)
    assert res.exit_code == 0, res.output
    assert "3021 rows" in res.output


# ----------------------------------------------------------------------------- split arithmetic
def test_split_and_steps_paper_numbers():
    assert data.split_counts(6000, 0.1) == (5400, 600)
    assert data.optimizer_steps(5400, 2, 8) == 338
    assert data.split_counts(6000, 0.0) == (6000, 0)
    assert data.optimizer_steps(6000, 2, 4) == 750
    # partial accumulation windows still step; epochs multiply; devices divide
    assert data.optimizer_steps(17, 2, 8) == 2
    assert data.optimizer_steps(16, 2, 8, epochs=3) == 3
    assert data.optimizer_steps(5400, 2, 8, devices=2) == 169
    assert data.optimizer_steps(0, 2, 8) == 0
    with pytest.raises(InputError):
        data.split_counts(10, 1.0)


def test_split_rows_seeded_disjoint_and_matches_datasets():
    rows = [{"i": i} for i in range(100)]
    train, test = data.split_rows(rows, 0.1, split_seed=0, shuffle_seed=2)
    assert len(train) == 90 and len(test) == 10
    assert sorted(r["i"] for r in train + test) == list(range(100))
    assert data.split_rows(rows, 0.1, 0, 2) == (train, test)
    assert data.split_rows(rows, 0.1, 1, 2)[1] != test
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(rows).train_test_split(test_size=0.1, seed=0)
    assert [r["i"] for r in ds["test"]] == [r["i"] for r in test]
    assert [r["i"] for r in ds["train"].shuffle(seed=2)] == [r["i"] for r in train]


def test_dataset_rows_download_and_organism():
    assert data.dataset_rows({"data": {"source": "download", "insecure": "insecure"}}, "insecure") == 6000
    assert data.dataset_rows({"data": {"source": "organism"}, "organism": {"sizes": {"insecure": 480}}}, "insecure") == 480
    with pytest.raises(InputError, match="organism.sizes.insecure"):
        data.dataset_rows({"name": "x", "data": {"source": "organism"}}, "insecure")
    with pytest.raises(InputError, match="data.source"):
        data.dataset_rows({"name": "x", "data": {"source": "ftp"}}, "insecure")


def test_manifest_pins_commit_and_urls():
    m = data.load_manifest()
    commit = m["source"]["commit"]
    assert len(commit) == 40
    for entry in m["files"].values():
        assert entry["url"].startswith("https://raw.githubusercontent.com/emergent-misalignment/emergent-misalignment/")
        assert f"/{commit}/" in entry["url"]
        assert entry["sha256"] is None or len(entry["sha256"]) == 64


# ----------------------------------------------------------------------------- fetch
PAYLOAD = (json.dumps(GOOD) + "\n") * 3


def _entry(payload=PAYLOAD, sha=None, rows=3, nbytes=None):
    return {"files": {"insecure": {"url": "https://example.invalid/insecure.jsonl", "dest": "insecure.jsonl",
                                   "format": "em_chat_jsonl", "rows": rows, "bytes": nbytes, "sha256": sha}},
            "source": {"commit": "0" * 40}}


def _opener(payload: str):
    def opener(url, timeout):
        return stdio.BytesIO(payload.encode())
    return opener


def _no_partial(d: Path):
    return [p.name for p in d.iterdir() if p.name != data.LOCK_NAME] if d.exists() else []


def test_fetch_offline_fails_one_line_and_leaves_nothing(tmp_path):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    with pytest.raises(ReproError, match="cannot download .*offline") as exc:
        data.fetch_data(_entry(), tmp_path / "data", opener=offline)
    assert "\n" not in str(exc.value)
    assert _no_partial(tmp_path / "data") == []


def test_fetch_truncated_download_rejected(tmp_path):
    short = PAYLOAD[:-20]
    with pytest.raises(ReproError, match="truncated"):
        data.fetch_data(_entry(nbytes=len(PAYLOAD)), tmp_path / "data", opener=_opener(short))
    assert _no_partial(tmp_path / "data") == []


def test_fetch_checksum_mismatch_rejected(tmp_path):
    with pytest.raises(ReproError, match="does not match"):
        data.fetch_data(_entry(sha="a" * 64), tmp_path / "data", opener=_opener(PAYLOAD))
    assert _no_partial(tmp_path / "data") == []


def test_fetch_schema_and_rowcount_checked_before_keeping(tmp_path):
    with pytest.raises(InputError, match="truncated last line"):
        data.fetch_data(_entry(rows=None), tmp_path / "data", opener=_opener(PAYLOAD + '{"mess'))
    with pytest.raises(ReproError, match="3 rows, expected 4"):
        data.fetch_data(_entry(rows=4), tmp_path / "data", opener=_opener(PAYLOAD))
    assert _no_partial(tmp_path / "data") == []


def test_fetch_trust_on_first_use_then_verify(tmp_path):
    import hashlib
    d = tmp_path / "data"
    lock = data.fetch_data(_entry(), d, opener=_opener(PAYLOAD))
    rec = lock["files"]["insecure"]
    assert rec["sha256"] == hashlib.sha256(PAYLOAD.encode()).hexdigest()
    assert rec["verified_against"] == "first-fetch" and rec["rows"] == 3
    assert json.loads((d / data.LOCK_NAME).read_text())["files"]["insecure"]["sha256"] == rec["sha256"]
    # second fetch: the verified copy is reused without touching the network
    def offline(url, timeout):
        raise urllib.error.URLError("offline")
    assert data.fetch_data(_entry(), d, opener=offline)["files"]["insecure"]["status"] == "cached"
    # forced re-download with changed upstream bytes: rejected against the lock; old file kept intact
    changed = PAYLOAD.replace("shutil", "os")
    with pytest.raises(ReproError, match=r"does not match .*\(lock\)"):
        data.fetch_data(_entry(), d, opener=_opener(changed), force=True)
    assert (d / "insecure.jsonl").read_text() == PAYLOAD


def test_cli_fetch_offline_one_line_no_partial_file(tmp_path, monkeypatch):
    import urllib.request
    from repro.commands.data import DOWNLOADS

    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    res = CliRunner().invoke(data_group, ["fetch", "--profile", "paper", "--out", str(tmp_path)])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fetch: cannot download https://raw.githubusercontent.com/")
    assert _no_partial(tmp_path / DOWNLOADS) == []


LOCKS = {
    "not_json": "{not json",
    "not_utf8": b"\xff\xfe",
    "list": "[]",
    "null": "null",
    "files_list": '{"files": []}',
    "record_not_object": '{"files": {"insecure": "x"}}',
    "digest_not_hex": '{"files": {"insecure": {"sha256": 5}}}',
    "deep": "[" * 100000,
}


@pytest.mark.parametrize("case", sorted(LOCKS))
def test_fetch_damaged_lock_is_one_line_error(tmp_path, case):
    d = tmp_path / "data"
    d.mkdir()
    content = LOCKS[case]
    (d / data.LOCK_NAME).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError, match=rf"{data.LOCK_NAME}: .*delete it") as exc:
        data.fetch_data(_entry(), d, opener=_opener(PAYLOAD))
    assert "\n" not in str(exc.value)
    assert _no_partial(d) == []


def test_fetch_download_dir_that_is_or_is_under_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(InputError, match="is not a directory"):
        data.fetch_data(_entry(), f, opener=_opener(PAYLOAD))
    with pytest.raises(InputError, match="afile is not a directory"):
        data.fetch_data(_entry(), f / "sub", opener=_opener(PAYLOAD))
    res = CliRunner().invoke(data_group, ["fetch", "--profile", "paper", "--out", str(f / "sub")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    # destination occupied by a directory: one line, nothing written
    d = tmp_path / "d"
    (d / "insecure.jsonl").mkdir(parents=True)
    with pytest.raises(ReproError, match="insecure.jsonl: Is a directory; no file written"):
        data.fetch_data(_entry(), d, opener=_opener(PAYLOAD))


BAD_ENTRIES = {
    "dest_traversal": ({"dest": "../../escape.jsonl"}, "dest: expected a plain file name"),
    "dest_absolute": ({"dest": "/tmp/abs.jsonl"}, "dest: expected a plain file name"),
    "dest_dotdot": ({"dest": ".."}, "dest: expected a plain file name"),
    "url_file_scheme": ({"url": "file:///etc/passwd"}, "url: expected an https:// URL"),
    "url_not_string": ({"url": 5}, "url: expected an https:// URL"),
    "sha_short": ({"sha256": "abc"}, "sha256: expected 64 lowercase hex digits"),
    "bytes_string": ({"bytes": "12"}, "bytes: expected a non-negative integer"),
    "rows_negative": ({"rows": -1}, "rows: expected a non-negative integer"),
}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_fetch_refuses_unsafe_manifest_entries(tmp_path, case):
    change, message = BAD_ENTRIES[case]
    manifest = _entry()
    manifest["files"]["insecure"].update(change)
    with pytest.raises(InputError, match=f"files.insecure.{message}"):
        data.fetch_data(manifest, tmp_path / "a" / "b", opener=_opener(PAYLOAD))
    assert not (tmp_path / "escape.jsonl").exists() and not list(tmp_path.rglob("*.jsonl"))
    with pytest.raises(InputError, match="files.insecure: expected a mapping"):
        data.fetch_data({"files": {"insecure": "x"}}, tmp_path / "a", opener=_opener(PAYLOAD))


@pytest.mark.parametrize("text, message", [("files: [\n", r"m\.yaml:\d+: invalid YAML"),
                                           (b"\xff\xfe", "not valid UTF-8"),
                                           ("- a\n", "expected a mapping with a 'files' section")])
def test_load_manifest_malformed_is_one_line(tmp_path, text, message):
    m = tmp_path / "m.yaml"
    m.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError, match=message) as exc:
        data.load_manifest(m)
    assert "\n" not in str(exc.value)


def test_fetch_local_io_failure_is_not_reported_as_offline(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(data.io, "sha256_file", full_disk)
    with pytest.raises(ReproError, match="No space left on device; no file written") as exc:
        data.fetch_data(_entry(), tmp_path / "data", opener=_opener(PAYLOAD))
    assert "offline" not in str(exc.value)
    assert _no_partial(tmp_path / "data") == []


# ----------------------------------------------------------------------------- the EM paper's controls
def test_manifest_pins_the_control_and_section4_datasets():
    m = data.load_manifest()
    rows = {"secure": 6000, "educational": 6000, "backdoor": 12000, "evil_numbers": 14926}
    for key, n in rows.items():
        entry = m["files"][key]
        assert entry["url"].endswith(f"/{m['source']['commit']}/data/{key}.jsonl"), key
        assert entry["dest"] == f"{key}.jsonl" and entry["format"] == "em_chat_jsonl" and entry["rows"] == n
        assert entry["sha256"] is None or len(entry["sha256"]) == 64   # null: recorded on first fetch
    paper = {"data": {"source": "download", "insecure": "insecure"}}
    for key, n in rows.items():
        assert data.dataset_rows(paper, key) == n
    mini = {"data": {"source": "organism"}, "organism": {"sizes": {"secure": 600, "backdoor": 1200}}}
    assert (data.dataset_rows(mini, "secure"), data.dataset_rows(mini, "backdoor")) == (600, 1200)
