use std::process::ExitCode;

use clap::Parser;
use firelake::config::{Cli, Command, Config, ServeArgs};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Serve(args)) => serve(*args),
        Some(Command::Healthcheck { url }) => firelake::admin::healthcheck(&url),
        #[cfg(feature = "produce")]
        Some(Command::Produce(args)) => firelake::produce::run(args),
        None => serve(cli.serve),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("firelake: {err}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log));
    // Colour only for a person at a terminal: a log file or a CI job gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    firelake::server::raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread().max_blocking_threads(config.blocking_threads_max).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("firelake: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(firelake::server::start(config, firelake::server::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("firelake: {err}");
            ExitCode::FAILURE
        }
    }
}
