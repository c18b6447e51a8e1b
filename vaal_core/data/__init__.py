"""Images in: scanning folders, decoding files, the decoded cache, ingest,
serving images by item id, and the built-in digits data set."""
