"""The agent: registers with a pool token, long-polls for jobs, runs terraform, streams logs back."""
