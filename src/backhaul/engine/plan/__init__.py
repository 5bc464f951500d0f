"""Planning a sync: the diff against its snapshot, in local DuckDB or in the warehouse."""
