"""Ingest: manifests or folders of photos into ``photos`` (new keys only) and ``rejects``, every input row
accounted for (:mod:`facelink.ingest.photos`), reading only files under the allowed roots
(:mod:`facelink.ingest.input_paths`) and decoding each one on executors (:mod:`facelink.ingest.udf`)."""
