//! `dfs tx`: the batch files of `dfs tx apply` (`batch`) and the command's verbs (`cli`),
//! over the transaction API of the client library (`dfs_client::tx`).
//!
//! Owns: the command's formats and output. Must not talk to the server except through
//! `dfs_client::tx::Transaction`.

pub mod batch;
pub mod cli;
