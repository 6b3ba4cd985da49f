//! `offer-sim`: compare offer policies on simulated loyalty programs and on
//! full-feedback datasets, with the library's own policies and the server's
//! decision/feedback loop, without the network.
//!
//! `cli` defines the commands and their flags; `commands/` runs them.

mod cli;
mod commands;
mod dataset;
mod drive;
mod evaluate;
mod experiment;
mod load;
mod logs;
mod offer_features;
mod ope;
mod output;
mod policies;
mod report;
mod results;
mod run;
mod scenario;
mod stats;
mod world;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Compare(a) => commands::compare::compare(a),
        Command::Replay(a) => commands::compare::replay(a),
        Command::Ope(a) => commands::ope::ope(a),
        Command::Drive(a) => commands::live::drive(a),
        Command::Load(a) => commands::live::load(a),
        Command::CampaignConfig(a) => commands::live::campaign_config(a),
    }
}
