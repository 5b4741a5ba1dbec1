"""Shared machinery of kbatch's front ends: data streams, optimizer helpers,
exact state capture, argument and model checks, atomic I/O, the result base
class and the per-backend code. Not public: names here may change."""
