"""The CPU side of file_search, free of I/O: extracting text, cutting it into chunks, filters, fusion."""
