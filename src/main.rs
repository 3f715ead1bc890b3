//! The `chunkwise` command line: `serve` the local emulator, `upload` a file, run the `demo`.
//!
//! The command line is a contract other tools drive: `upload` prints the media id alone on
//! stdout, writes progress and logs to stderr, and exits non-zero with a one-line error.

mod cli;

use clap::Parser;
use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_tracing(&args.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            // Not eprintln!: a closed stderr must not turn the error into a panic.
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot start the async runtime: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, joined.
            let _ = writeln!(std::io::stderr(), "error: {}", cli::one_line(&e));
            cli::exit_code(&e)
        }
    }
}
