//! firelake: a local emulator of Amazon Data Firehose and Amazon S3.
//!
//! # Layout
//!
//! - [`config`]: the command line, validated once into a `Config`.
//! - [`server`]: the accept loop, per-connection HTTP, graceful shutdown, and the one
//!   function that decides which protocol a request speaks.
//! - [`http`]: helpers both protocols use: bodies, limits, request ids, credentials.
//! - [`auth`]: `--auth strict`: SigV4 verification for both protocols.
//! - [`s3`]: the S3 REST-XML protocol: a pure router, one handler per operation, and
//!   one error type rendered in one place.
//! - [`firehose`]: the Firehose JSON protocol.
//! - [`lambda`]: Lambda functions: the control API and invoking them.
//! - [`admin`]: firelake's own endpoints under `/_firelake/`.
//! - `produce`: `firelake produce`, a producer that sends through the AWS SDK (the
//!   `produce` feature).
//! - [`init`]: the buckets and delivery streams an init file declares, created at start.
//! - [`store`]: the data directory; the only module that touches it.
//! - [`testing`]: a server started inside a test, on port 0 with a throwaway data directory.
//!
//! # Features
//!
//! `cli` (clap, the command line) and `produce` (`firelake produce`: aws-config,
//! aws-sdk-firehose, indicatif) are on by default and needed only by the binary. A
//! crate that starts firelake in its tests through [`testing::Server`] needs neither:
//!
//! ```toml
//! [dev-dependencies]
//! firelake = { path = "../firelake", default-features = false }   # or git = "<this repository>"
//! ```

pub mod admin;
pub mod auth;
pub mod config;
pub mod firehose;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod init;
pub mod lambda;
#[cfg(feature = "produce")]
pub mod produce;
pub mod s3;
pub mod server;
pub mod sigv4;
pub mod store;
pub mod testing;
