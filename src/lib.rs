//! drifter-rsyslog: log lines as HTTP GET requests to an instance-less load balancer, whose
//! access logs in S3 are the log store.
//!
//! Data flows left to right through the modules: [`input`] reads lines, [`send`] drives them
//! into the [`pipeline`] (bounded queue and worker pool), whose workers use [`wire`] to build
//! request targets and [`deliver`] to send them; [`stats`] and [`dead_letter`] account for
//! every message.

pub mod access_log;
pub mod cli;
pub mod dead_letter;
pub mod decode;
pub mod deliver;
pub mod input;
pub mod key_file;
pub mod log_files;
pub mod mock_elb;
pub mod omprog;
pub mod outgoing;
pub mod pipeline;
pub mod reassembly;
pub mod send;
pub mod stand_in;
pub mod stats;
pub mod wire;
