//! One module per subcommand.

pub mod bench;
pub mod check;
pub mod common;
pub mod crash_images;
pub mod serve;
mod serve_cluster;
pub mod sim;
pub mod sim_cluster;
pub mod sim_report;
