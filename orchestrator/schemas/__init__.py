"""Request models (pydantic v2): the commands services accept. They validate input and document it in /openapi.json."""
