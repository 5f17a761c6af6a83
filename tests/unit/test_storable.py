"""The one rule for text Postgres cannot store: U+0000 and lone surrogates become U+FFFD."""

from orchestrator.domain.storable import storable, storable_json


def test_text_with_nothing_to_replace_is_returned_as_is():
    for text in ("", "plain", "café ☕ 😀"):
        assert storable(text) is text


def test_nul_and_lone_surrogates_become_the_replacement_character_and_nothing_else_changes():
    assert storable("a\x00b\x00") == "a\ufffdb\ufffd"
    assert storable("é\ud83d") == "é\ufffd" and storable("\udfff😀") == "\ufffd😀"


def test_every_string_of_a_json_value_keys_included_is_made_storable():
    value = {"k\x00": ["x\x00", 1, None, {"y": "\ud800"}], "n": 2.5}
    assert storable_json(value) == {"k\ufffd": ["x\ufffd", 1, None, {"y": "\ufffd"}], "n": 2.5}
