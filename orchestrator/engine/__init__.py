"""The engine: what a worker does with durable work (claim, advance a turn, model calls, server-side
tools, leases, sweeps), and the lifecycle the API faces move it with. See docs/engine.md."""
