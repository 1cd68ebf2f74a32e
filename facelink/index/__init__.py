"""FAISS indexes of face embeddings: choosing, building, storing and searching them (no Spark here).

Modules:
    params: index kind and parameter rules, nprobe tuning.
    build: train on a sample, fill shards from the serialised trained index, merge, store with sha256.
    search: global top-k across partition indexes, manifest loading, per-worker searcher cache.
    synthetic: galleries of unit embeddings with the similarity statistics of real faces.
"""
