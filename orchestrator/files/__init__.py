"""Files and file_search: uploads, vector stores and their files, ingestion, search."""
