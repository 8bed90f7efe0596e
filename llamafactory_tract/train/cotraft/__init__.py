"""``stage: cotraft``: CoT-RAFT (paper Eq. 4) as a workflow, a trainer subclass and a pure torch loss."""
