//! `dfs tx`: the batch files of `dfs tx apply` (`batch`), the command's verbs (`cli`) and
//! what they show (`show`), over the transaction API of the client library
//! (`dfs_client::tx`).
//!
//! Owns: the command's formats and output. Must not talk to the server except through
//! `dfs_client::tx::Transaction`.

pub mod batch;
pub mod cli;
mod show;
