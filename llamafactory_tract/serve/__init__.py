"""``tract serve``: the judge over HTTP, concurrent requests graded together in micro-batches."""
