"""Every table in one metadata: what Alembic compares the migrations with. Importing a table's module
registers it; this module imports them all."""

from orchestrator.db import container_models, models, response_models, retrieval_models

metadata = models.Base.metadata
TABLE_MODULES = (models, retrieval_models, response_models, container_models)
