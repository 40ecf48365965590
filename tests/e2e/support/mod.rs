//! What every test module shares: the environment (emulator, simulators, receiver, controller), typed
//! fixtures, polling, and the repository's tools.

pub mod env;
pub mod fixtures;
pub mod poll;
pub mod tools;

pub use tools::{admit, repo_root, tool_binary};
