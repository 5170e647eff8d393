"""Helpers shared by the tests: a throw-away project, lock servers, an S3 endpoint, waiting."""
