//! `offer-sim`: compare offer policies on simulated loyalty programs and on
//! full-feedback datasets, with the library's own policies and the server's
//! decision/feedback loop, without the network.
//!
//! `cli` defines the commands and their flags; `commands/` runs them;
//! `history/` is the verdict on a team's own history of sends.

mod campaign_file;
mod cli;
mod commands;
mod dataset;
#[cfg(test)]
mod delay_tests;
mod drive;
mod engine_run;
mod evaluate;
mod experiment;
mod history;
mod load;
mod logs;
mod offer_features;
mod ope;
mod output;
mod policies;
mod raw_grpc;
mod report;
mod results;
mod run;
mod scenario;
mod stats;
mod versus;
mod world;

use clap::Parser;
use offer_bandit::{BROKEN_PIPE_EXIT, is_broken_pipe, quiet_on_broken_pipe};

use crate::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    quiet_on_broken_pipe();
    let result = run(Cli::parse());
    if let Err(e) = &result
        && is_broken_pipe(e.as_ref())
    {
        std::process::exit(BROKEN_PIPE_EXIT);
    }
    result
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Compare(a) => commands::compare::compare(a),
        Command::Replay(a) => commands::compare::replay(a),
        Command::Ope(a) => commands::ope::ope(a),
        Command::Drive(a) => commands::live::drive(a),
        Command::Load(a) => commands::live::load(a),
        Command::CampaignConfig(a) => commands::live::campaign_config(a),
        Command::History(a) => history::run(a),
    }
}
