"""The lake: where facelink's tables and artefacts live, and how every process reaches it (``fs``)."""
