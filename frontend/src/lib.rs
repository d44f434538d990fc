//! kiln's Dockerfile frontend: reads a Dockerfile exactly as BuildKit does and lowers it to the LLB graph.
pub mod shell;
