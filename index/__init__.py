"""bike.index: the store (Parquet tables, FAISS vectors, DuckDB views) and search over it."""
