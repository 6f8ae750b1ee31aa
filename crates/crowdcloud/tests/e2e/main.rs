//! End-to-end tests: a real coordinator and real agents (processes of the `crowdcloud` binary)
//! on loopback, driven through the HTTP API and the CLI.

mod api;
mod at_rest;
mod bad_input;
mod bench;
mod bounds;
mod checkpoints;
mod cli;
mod edge;
mod failures;
mod federation;
mod harness;
mod hostile;
mod hostile_nodes;
mod internet;
mod jobs;
mod lan;
mod owner;
mod pipelines;
mod postgres;
mod presence;
mod private;
mod public;
mod public_networks;
mod recall;
mod registration;
mod remote;
mod retention;
mod s3;
mod standby;
mod takeover;
mod trust;
mod validators;
mod web;
