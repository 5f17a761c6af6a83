"""The web entrypoint: Flask views translate HTTP to service calls and back."""
