//! kiln's executor: runs one process in a namespace/cgroup sandbox. Its implementation arrives with the executor issue.
