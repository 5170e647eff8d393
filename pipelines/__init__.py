"""Example pipelines of batchdeps: daily web-server logs rolled up into a weekly report."""
