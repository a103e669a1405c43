//! Switchyard: private inference endpoints behind one OpenAI-compatible gateway.
//!
//! See ARCHITECTURE.md for the map of these modules and the request path.

pub mod api;
pub mod cli;
pub mod config;
pub mod connect_widget;
pub mod cors;
pub mod dashboard;
pub mod deploy;
pub mod domain;
pub mod error;
pub mod events;
pub mod gateway;
pub mod money;
pub mod pricing;
pub mod providers;
pub mod ratelimit;
pub mod recorder;
pub mod registry;
pub mod secrets;
pub mod selector;
pub mod server;
pub mod shared_limits;
pub mod state;
pub mod store;
pub mod tokens;
pub mod webhooks;
