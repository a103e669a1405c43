//! The client side of the `switchyard` binary: commands that work offline
//! (`recommend`) and commands that talk to a running server.

pub mod recommend;
