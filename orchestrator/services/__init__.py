"""Services decide: each public function is one use case run in one unit of work."""
