"""`python -m orchestrator.providers.query_graph_export [DIRECTORY]`: write the short-text encoder's graph
(query_graph.py) and print its path. An image's build runs it; so does a searching process without torch, as
a short-lived child (`query_graph.export_in_child`). Without DIRECTORY, the configured cache directory."""

from __future__ import annotations

import sys
from pathlib import Path

from orchestrator.providers import embeddings, query_graph
from orchestrator.providers.onnx_encoder import export_minilm


def export_here() -> bytes:
    """The graph of the wheel's model, exported in this process (which imports torch)."""
    package, torch, minilm = embeddings._import_local()
    torch.set_num_threads(1)  # about a second of work: spare the other processes' cores
    return export_minilm(minilm.load(Path(package.MODEL_DIR)))


def main(argv: list[str]) -> int:
    from orchestrator.settings import Settings

    cache = Path(argv[0]) if argv else query_graph.directory(Settings().cache_dir)
    query_graph.build(cache, export_here)
    print(query_graph.path(cache))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
