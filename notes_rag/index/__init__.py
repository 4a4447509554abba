"""Notes to a searchable index: reading, chunking, embedding, storing, searching."""
