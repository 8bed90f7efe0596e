"""Judge data: the score format, score-token location, the validating ``cotraft`` processor."""
