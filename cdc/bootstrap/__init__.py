"""On-demand table bootstrap: a consistent, chunked snapshot of a source table into its lake table."""
