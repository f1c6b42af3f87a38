//! llm-rotate: which LLM endpoint may this script call right now? The binary is a thin
//! shell around [`run`]; the modules are public so that benchmarks can drive the ledger.

pub mod anchor;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod complete;
pub mod cooldown;
pub mod duration;
pub mod endpoints;
pub mod engine;
pub mod env;
pub mod estimate;
pub mod forward;
pub mod glob;
pub mod ledger;
pub mod money;
pub mod output;
pub mod quota;
pub mod random;
pub mod response;

pub use commands::run;
