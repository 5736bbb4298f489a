"""Data for the LRA tasks: generators, release readers and preparation."""
