//! Helpers the integration tests of `sockyard` and `sockyard-cli` share: servers (in this
//! process, or the `sockyard` binary as a child process), WebSocket, SocketCluster, HTTP and
//! TLS clients, test key pairs, the programs `sockyard wrap` tests wrap, scratch files and
//! databases, the Node.js harness of the compatibility suite, and when a test may skip.
//!
//! Not published: it exists for the workspace's own tests.

pub mod binary;
pub mod client;
pub mod database;
pub mod http;
pub mod keys;
pub mod node;
pub mod process;
pub mod programs;
pub mod router;
pub mod server;
pub mod skip;
pub mod socketcluster;
pub mod tempdir;
pub mod tls;
pub mod wait;
pub mod ws;
