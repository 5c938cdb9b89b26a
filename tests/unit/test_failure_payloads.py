"""What a job_failure row stores: any payload, made storable, with its exact form kept as text."""

import json

from rewards.ledger.failures import (
    MAX_PAYLOAD_DEPTH,
    escape_text,
    fingerprint,
    stored_payload,
)


def test_nul_and_lone_surrogates_are_written_as_escapes_and_other_text_is_kept():
    assert escape_text("a\x00b\ud800c\udfffé✓") == "a\\u0000b\\ud800c\\udfffé✓"


def test_a_payload_with_unstorable_strings_keys_and_numbers_keeps_its_exact_form_as_text():
    payload = {"reason": "nul\x00", "k\ud800": float("nan"), "n": 10**2000, "ok": [1, 2.5, None, True]}
    sanitised, raw = stored_payload(payload)

    assert sanitised == {"reason": "nul\\u0000", "k\\ud800": "nan", "n": "<integer of 6644 bits>",
                         "ok": [1, 2.5, None, True]}
    assert raw.isascii() and "\x00" not in raw
    assert json.loads(raw)["reason"] == "nul\x00"


def test_deep_nesting_is_cut_and_a_huge_payload_is_summarised():
    deep: list = []
    for _ in range(MAX_PAYLOAD_DEPTH + 10):
        deep = [deep]
    sanitised, _ = stored_payload(deep)
    assert json.dumps(sanitised).count("[") == MAX_PAYLOAD_DEPTH
    huge, raw = stored_payload({"blob": "x" * 200_000})
    assert "too_large" in huge and len(raw) == 100_000


def test_the_same_payload_has_the_same_fingerprint_and_an_unprintable_one_has_one_too():
    assert fingerprint("rewards.checkin", {"a": 1}) == fingerprint("rewards.checkin", {"a": 1})
    assert fingerprint("rewards.checkin", {"a": 1}) != fingerprint("rewards.checkin", {"a": 2})
    assert len(fingerprint("rewards.checkin", {"n": 10**5000})) == 64
