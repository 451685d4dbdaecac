"""index.search: search over a store: the FAISS vector index (``vectors``, ``vecstream``), the
:class:`~index.search.search.Searcher` and its parts (frames, moments, reranking, fusion, feedback, user tags),
the text index over transcripts and duplicate detection. It reads the store through :mod:`index.store`."""
