"""The run log (every path and column of a run folder), evaluation, frontiers, export and charts."""
