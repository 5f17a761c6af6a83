"""The Responses face's side of the engine: what a Response's run writes (output items, its stream's
events) and reads (its prompt). The engine leases, fences, numbers and recovers it like any run."""
