"""Model providers: the local deterministic model and the OpenAI-compatible upstream, behind one port."""
