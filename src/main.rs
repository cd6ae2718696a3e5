//! The `shardline` command line.
fn main() {}
