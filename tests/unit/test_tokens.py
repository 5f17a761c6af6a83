"""Token counting: tiktoken's encoding when it can be loaded, the stated fallback otherwise."""

from __future__ import annotations

import time

import pytest
import tiktoken

from orchestrator.providers import tokens


def test_the_fallback_counts_one_token_per_word_or_punctuation_mark():
    assert tokens.fallback_count("Hello, world!") == 4
    assert tokens.fallback_count("   ") == 0


def test_empty_text_is_zero_tokens_and_any_word_is_at_least_one():
    assert tokens.count("") == 0
    assert tokens.count("x") >= 1


def test_count_uses_the_encoding_when_it_loads_and_the_fallback_when_it_does_not():
    text = "The quick brown fox jumps over the lazy dog."
    encoding = tokens._encoding("o200k_base")
    expected = len(encoding.encode(text)) if encoding else tokens.fallback_count(text)
    assert tokens.count(text) == expected


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("meta-llama/Llama-3.1-8B-Instruct", "o200k_base"),
        ("local-echo", "o200k_base"),
        (None, "o200k_base"),
    ],
)
def test_known_models_use_their_encoding_and_others_o200k(model, encoding):
    assert tokens.encoding_name(model) == encoding


def test_a_slow_encoding_download_falls_back_instead_of_hanging(monkeypatch):
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: time.sleep(1))
    monkeypatch.setattr(tokens, "LOAD_SECONDS", 0.05)
    started = time.monotonic()
    assert tokens._encoding("test_slow_encoding") is None
    assert time.monotonic() - started < 0.5


def test_an_encoding_that_fails_to_load_falls_back(monkeypatch):
    def offline(name):
        raise ConnectionError("no network")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    assert tokens._encoding("test_offline_encoding") is None


def test_messages_cost_their_content_plus_framing_including_tool_calls():
    call = {"id": "c", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {}}]},
    ]
    expected = (
        3 * tokens.PER_MESSAGE
        + tokens.PER_REPLY
        + tokens.count("Be brief.")
        + tokens.count('weather {"city": "Paris"}')
        + tokens.count("hi")
    )
    assert tokens.count_messages(messages) == expected


def test_function_definitions_count_toward_the_prompt():
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    assert tokens.count_tools([]) == 0
    assert tokens.count_tools([tool]) > 0
