//! The `mediagen` binary.
fn main() {}
