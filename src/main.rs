//! The `sqlctl` binary: parse, set up logging, dispatch, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use sqlctl::cli::{Cli, run};
use sqlctl::exit::Exit;

fn main() -> ExitCode {
    // The local engine's pre-approval planner child (`engine::preflight`): hidden, not a command.
    if std::env::args_os().nth(1).is_some_and(|a| a == sqlctl::engine::preflight::SUBCOMMAND) {
        return sqlctl::engine::preflight_child_main();
    }
    let cli = Cli::parse();
    let server = matches!(cli.command, sqlctl::cli::Command::Controller(_) | sqlctl::cli::Command::Console(_));
    if !server {
        // `sqlctl … | head`: a reader that goes away ends the command quietly (exit 0).
        sqlctl::cli::output::quiet_on_closed_stdout();
    }
    let _telemetry = init_logging(
        &cli.global.log_format,
        cli.global.log_level.as_deref(),
        matches!(cli.command, sqlctl::cli::Command::Controller(_)),
    );
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sqlctl: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`| head`): nothing more to say, and nobody to say it to.
        Err(e) if !server && sqlctl::cli::output::is_closed_stdout(&e) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<Exit>() {
                if !exit.message.is_empty() {
                    eprintln!("sqlctl: {}", exit.message);
                }
                return ExitCode::from(exit.code);
            }
            eprintln!("sqlctl: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// What keeps trace export running until `main` ends (flushed on drop); `()` without the
/// `otlp` feature.
#[cfg(feature = "otlp")]
type Telemetry = Option<sqlctl::otlp::Guard>;
#[cfg(not(feature = "otlp"))]
type Telemetry = NoTelemetry;
/// Nothing to flush: this build exports no traces.
#[cfg(not(feature = "otlp"))]
struct NoTelemetry;

fn init_logging(format: &str, filter: Option<&str>, controller: bool) -> Telemetry {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};
    let default = if controller { "info" } else { "warn" };
    let filter = EnvFilter::try_new(filter.unwrap_or(default)).unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(use_colour(std::io::IsTerminal::is_terminal(&std::io::stderr()), std::env::var_os("NO_COLOR")));
    let fmt = if format == "json" {
        // `span`: the reconcile a line was logged in (namespace, name, uid, generation, reason).
        fmt.json().flatten_event(true).with_current_span(true).with_span_list(false).with_filter(filter).boxed()
    } else {
        fmt.with_target(false).with_filter(filter).boxed()
    };
    let registry = tracing_subscriber::registry().with(fmt);
    #[cfg(feature = "otlp")]
    {
        match sqlctl::otlp::layer() {
            Some((layer, guard)) => {
                registry.with(layer).init();
                Some(guard)
            }
            None => {
                registry.init();
                None
            }
        }
    }
    #[cfg(not(feature = "otlp"))]
    {
        registry.init();
        NoTelemetry
    }
}

/// Colour codes in text logs only on a terminal, and never when `NO_COLOR` is set to anything
/// (<https://no-color.org>): a log redirected to a file or collected by a supervisor stays plain.
fn use_colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(super::use_colour(true, None));
        assert!(!super::use_colour(false, None), "redirected: plain");
        assert!(!super::use_colour(true, Some("1".into())), "NO_COLOR set");
        assert!(super::use_colour(true, Some("".into())), "NO_COLOR empty counts as unset");
    }
}
