"""The historian: interval aggregation of the tag stream, storage backends, queries."""
