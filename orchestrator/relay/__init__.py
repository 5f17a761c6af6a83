"""The relayed model APIs: chat completions, embeddings and models, answered by the local model in the api
process or passed to a route's upstream as they come. Not durable work: nothing is stored (docs/chat-and-embeddings.md)."""
