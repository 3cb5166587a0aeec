"""Developer tools behind `mms`: demo, benchmarks, the server launcher, the load client."""
