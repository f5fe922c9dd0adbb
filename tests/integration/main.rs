//! The integration tests, one module per concern, in one test binary (each binary links the
//! whole dependency tree, so one saves CI the time of a dozen links). Real servers on
//! 127.0.0.1 and a real `redis-server` where a user would run them.

#[path = "../common/mod.rs"]
mod common;

mod axum_router;
mod demo;
mod ed25519;
mod event_types;
mod events;
mod guards;
mod hyper_server;
mod inbox;
mod inbox_demo;
mod inbox_redis;
mod network;
mod observe;
mod operations;
mod properties;
mod provider_ranges;
mod redis_store;
mod replay;
mod secret_file;
mod stack;
mod svix_interop;
mod tonic_service;
mod vectors;
