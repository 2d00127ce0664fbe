use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let settings = gateway::Settings::parse();
    eprintln!(
        "gateway: settings read (listen {}), but the HTTP API is not part of this build yet: \
         it arrives with the gateway issue. Use `worker transform` meanwhile.",
        settings.listen
    );
    ExitCode::from(1)
}
