//! `sluice`: one binary for every role (`dev`, `control-plane`,
//! `data-plane`) and the client commands.

mod api_client;
mod audit;
mod cli;
mod config;
mod connect;
mod demo;
mod dev;
mod dev_http;
mod login;
mod output;
mod policy;
mod roles;
mod secrets;
mod sessions;
mod telemetry;
mod token;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    telemetry::init(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
