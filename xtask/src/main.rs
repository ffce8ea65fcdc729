//! Project tasks, run as `cargo xtask <task>` (see `.cargo/config.toml`).
//!
//! - `ci`: formatting, clippy with warnings as errors, the whole test suite with the
//!   property tests at CI size (`PROPTEST_CASES`, default 512). What `.ci/run` runs.
//! - `proptest`: the model-based property tests only, in release mode, at
//!   `PROPTEST_CASES` (default 20000).
//! - `bench [core]`: the criterion benchmarks; figures go to `docs/benchmarks.md` by hand.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a task runner talks on the terminal

use std::env;
use std::process::{Command, ExitCode};

const CI_PROPTEST_CASES: &str = "512";
const DEEP_PROPTEST_CASES: &str = "20000";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let task = args.first().map(String::as_str);
    let result = match task {
        Some("ci") => ci(),
        Some("proptest") => proptest(),
        Some("bench") => bench(args.get(1).map(String::as_str)),
        _ => {
            eprintln!("usage: cargo xtask <ci | proptest | bench [core]>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(step) => {
            eprintln!("xtask: {step} failed");
            ExitCode::FAILURE
        }
    }
}

fn ci() -> Result<(), String> {
    cargo(&["fmt", "--all", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    let cases = env::var("PROPTEST_CASES").unwrap_or_else(|_| CI_PROPTEST_CASES.into());
    cargo(
        &["test", "--workspace", "--all-targets"],
        &[("PROPTEST_CASES", &cases)],
    )?;
    // Doc tests are not part of --all-targets.
    cargo(&["test", "--workspace", "--doc"], &[])
}

fn proptest() -> Result<(), String> {
    let cases = env::var("PROPTEST_CASES").unwrap_or_else(|_| DEEP_PROPTEST_CASES.into());
    println!("property tests at PROPTEST_CASES={cases}");
    cargo(
        &[
            "test",
            "--release",
            "-p",
            "hale-core",
            "--test",
            "breaker_model",
            "--test",
            "health_model",
            "--test",
            "failsafe_differential",
        ],
        &[("PROPTEST_CASES", &cases)],
    )
}

fn bench(which: Option<&str>) -> Result<(), String> {
    match which {
        None | Some("core") => cargo(&["bench", "-p", "hale-core", "--bench", "closed_path"], &[]),
        Some(other) => Err(format!("bench {other} (unknown; expected: core)")),
    }
}

fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<(), String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let line = format!("cargo {}", args.join(" "));
    println!("$ {line}");
    let status = Command::new(cargo)
        .args(args)
        .envs(envs.iter().copied())
        .status()
        .map_err(|e| format!("{line} ({e})"))?;
    if status.success() { Ok(()) } else { Err(line) }
}
