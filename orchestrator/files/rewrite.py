"""Query rewriting: `rewrite_query: true` on `/vector_stores/{id}/search` searches for a rewritten query,
and the page's `search_query` shows it.

    rewrite(ctx, query) -> str     through ORCHESTRATOR_REWRITE_MODEL
    local_rule(query) -> str       the local model's rule (below); deterministic

`ORCHESTRATOR_REWRITE_MODEL` `local` (the default, or any `local…` name) applies the rule; another name is
a chat model routed like any other (docs/models.md), asked for a search query. When that call fails, or
its answer is empty, the rule applies instead (logged).

The local rule (ARCHITECTURE.md, "The local model"):
  1. lowercase the query;
  2. its words are the maximal runs of letters and digits, joined across an apostrophe or hyphen standing
     between two such runs ("what's", "e-mail"); everything else (punctuation, symbols) separates words;
  3. drop the words in STOP_WORDS (English function words: question words, auxiliaries, pronouns,
     articles, prepositions, conjunctions, and request words such as "please", "tell", "find");
  4. drop repeats of a word already kept;
  5. the rewritten query is the remaining words in their original order, joined by single spaces.
  If no word remains, it is all the query's words (step 2) joined by single spaces; if the query has no
  word at all, the query unchanged.
"""

from __future__ import annotations

import logging
import re

from orchestrator.context import Context

log = logging.getLogger(__name__)

WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
# fmt: off
STOP_WORDS = frozenset(["a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "aren't", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "can't", "cannot", "could", "couldn't", "did", "didn't", "do", "does", "doesn't", "doing", "don't", "down", "during", "each", "few", "for", "from", "further", "had", "hadn't", "has", "hasn't", "have", "haven't", "having", "he", "he'd", "he'll", "he's", "her", "here", "here's", "hers", "herself", "him", "himself", "his", "how", "how's", "i", "i'd", "i'll", "i'm", "i've", "if", "in", "into", "is", "isn't", "it", "it's", "its", "itself", "let's", "me", "more", "most", "mustn't", "my", "myself", "no", "nor", "not", "of", "off", "on", "once", "only", "or", "other", "ought", "our", "ours", "ourselves", "out", "over", "own", "same", "shan't", "she", "she'd", "she'll", "she's", "should", "shouldn't", "so", "some", "such", "than", "that", "that's", "the", "their", "theirs", "them", "themselves", "then", "there", "there's", "these", "they", "they'd", "they'll", "they're", "they've", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "wasn't", "we", "we'd", "we'll", "we're", "we've", "were", "weren't", "what", "what's", "when", "when's", "where", "where's", "which", "while", "who", "who's", "whom", "why", "why's", "will", "with", "won't", "would", "wouldn't", "you", "you'd", "you'll", "you're", "you've", "your", "yours", "yourself", "yourselves", "also", "anyone", "anything", "get", "got", "just", "may", "might", "must", "shall", "something", "tell", "show", "find", "give", "explain", "describe", "know", "let", "please", "want", "need", "like", "say", "said", "us", "via", "whose", "whatever", "whichever", "whoever", "whenever", "wherever", "however"])
# fmt: on
SYSTEM_PROMPT = (
    "Rewrite the user's message as a short search query for a document search engine: the key terms "
    "only, no explanation. Reply with the query alone."
)


def rewrite(ctx: Context, query: str) -> str:
    model = ctx.settings.rewrite_model
    if model.startswith("local"):
        return local_rule(query)
    try:
        rewritten = _by_model(ctx, model, query)
    except Exception as error:  # noqa: BLE001 - any failure of the model call falls back to the rule
        log.warning("query rewriting by %s failed, the local rule applies: %s", model, error)
        return local_rule(query)
    return rewritten or local_rule(query)


def local_rule(query: str) -> str:
    words = WORD.findall(query.lower().replace("’", "'"))
    if not words:
        return query
    kept = [word for word in dict.fromkeys(words) if word not in STOP_WORDS]
    return " ".join(kept or words)


def _by_model(ctx: Context, model: str, query: str) -> str:
    from orchestrator.providers import model_routes as routes
    from orchestrator.providers.upstream import client_for

    target = routes.resolve(model, ctx.settings)
    client = client_for(target.endpoint).with_options(max_retries=2)
    completion = client.chat.completions.create(
        model=target.model,
        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": query}],
        **{target.max_tokens_param: 64},
    )
    text = (completion.choices[0].message.content or "") if completion.choices else ""
    return " ".join(text.split()).strip("\"'")
