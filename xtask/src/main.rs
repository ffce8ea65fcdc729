//! Project tasks, run as `cargo xtask <task>` (see `.cargo/config.toml`).
//!
//! - `ci`: formatting, clippy with warnings as errors, the whole test suite with the
//!   property tests at CI size (`PROPTEST_CASES`, default 512). What `.ci/run` runs.
//! - `proptest`: the model-based property tests only, in release mode, at
//!   `PROPTEST_CASES` (default 100000).
//! - `bench [core|proxy|vmcp]`: the benchmarks (all without an argument); figures go to
//!   `docs/benchmarks.md` by hand.
//! - `interop`: hale against real third-party MCP servers and the conformance suite
//!   (installs Node 22, npm packages and a Python venv under `target/interop/`).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a task runner talks on the terminal

mod auth;
mod blip;
mod ecosystem;
mod eras;
mod interop;
mod oauth;
mod otel;
mod replicas;
mod servers;
mod stdio;
mod tally;
mod watcher;

use tally::Tally;

use std::env;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

const CI_PROPTEST_CASES: &str = "512";
const DEEP_PROPTEST_CASES: &str = "100000";

/// One part of `interop` alone (`auth`, `stdio`, `replicas`): what interop installs, the
/// binaries it runs, then `run`, with the closing `N passed, N failed` line.
fn part(
    name: &str,
    run: fn(&servers::Paths<'_>, &mut Tally) -> Result<Vec<String>, String>,
) -> Result<(), String> {
    let root = workspace_root();
    let dir = root.join("target/interop");
    let bin = root.join("target/debug");
    let python = dir.join("venv/bin/python");
    let mut tally = Tally::default();
    let result = interop::install_all(&dir)
        .and_then(|()| cargo(&["build", "-q", "-p", "hale", "-p", "hale-testkit"], &[]))
        .and_then(|()| {
            run(
                &servers::Paths {
                    root: &root,
                    dir: &dir,
                    bin: &bin,
                    python: &python,
                },
                &mut tally,
            )
        })
        .and_then(none_failed);
    println!("{name}: {} passed, {} failed", tally.passed, tally.failed);
    result
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let task = args.first().map(String::as_str);
    let result = match task {
        Some("ci") => ci(),
        Some("proptest") => proptest(),
        Some("bench") => bench(args.get(1).map(String::as_str)),
        Some("blip") => {
            // The network-blip part of `interop` alone (it needs interop's Python venv).
            let root = workspace_root();
            let mut tally = Tally::default();
            let result = cargo(&["build", "-q", "-p", "hale", "-p", "hale-testkit"], &[])
                .and_then(|()| {
                    blip::run(
                        &root.join("target/debug"),
                        &root.join("target/interop/venv/bin/python"),
                        &root.join("xtask/interop/python_watch.py"),
                        &mut tally,
                    )
                })
                .and_then(none_failed);
            println!("blip: {} passed, {} failed", tally.passed, tally.failed);
            result
        }
        Some("auth") => part("auth", auth::run),
        Some("oauth") => part("oauth", oauth::run),
        Some("otel") => part("otel", otel::run),
        Some("replicas") => part("replicas", replicas::run),
        Some("ecosystem") => part("ecosystem", ecosystem::run),
        Some("stdio") => part("stdio", stdio::run),
        Some("interop") => {
            let mut tally = Tally::default();
            let result = interop::run(&mut tally);
            println!("interop: {} passed, {} failed", tally.passed, tally.failed);
            result
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | proptest | bench [core|proxy|vmcp] | interop | blip | auth | oauth | otel | stdio | replicas | ecosystem>"
            );
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
    let mut tally = Tally::default();
    let suites = cargo_test(
        &["test", "--workspace", "--all-targets"],
        &[("PROPTEST_CASES", &cases)],
        &mut tally,
    );
    // Doc tests are not part of --all-targets.
    let docs = cargo_test(&["test", "--workspace", "--doc"], &[], &mut tally);
    // The heavy suite against real third-party servers, once.
    let interop = if suites.is_ok() && docs.is_ok() {
        interop::run(&mut tally)
    } else {
        Ok(())
    };
    // One closing line for the whole run, whatever order cargo printed the crates in.
    println!("ci: {} passed, {} failed", tally.passed, tally.failed);
    suites.and(docs).and(interop)
}

/// The workspace root (xtask lives one level below it).
/// Ok if a part of interop run alone listed no failures.
fn none_failed(failures: Vec<String>) -> Result<(), String> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{failures:?}"))
    }
}

pub(crate) fn workspace_root() -> PathBuf {
    let manifest = env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    PathBuf::from(manifest)
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Runs a cargo test command, echoing its output and counting its results.
fn cargo_test(args: &[&str], envs: &[(&str, &str)], tally: &mut Tally) -> Result<(), String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let line = format!("cargo {}", args.join(" "));
    println!("$ {line}");
    let mut child = Command::new(cargo)
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{line} ({e})"))?;
    if let Some(out) = child.stdout.take() {
        for text in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{text}");
            tally.add(&text);
        }
    }
    let status = child.wait().map_err(|e| format!("{line} ({e})"))?;
    if status.success() { Ok(()) } else { Err(line) }
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
        Some("core") => cargo(&["bench", "-p", "hale-core", "--bench", "closed_path"], &[]),
        Some("proxy") => {
            install_debian(&[("nginx", "nginx-light"), ("wrk", "wrk")])?;
            cargo(&["bench", "-p", "hale-proxy", "--bench", "proxy"], &[])
        }
        Some("vmcp") => cargo(&["bench", "-p", "hale-vmcp", "--bench", "vmcp"], &[]),
        Some("gray") => cargo(&["bench", "-p", "hale-vmcp", "--bench", "gray"], &[]),
        None => bench(Some("core"))
            .and_then(|()| bench(Some("proxy")))
            .and_then(|()| bench(Some("vmcp")))
            .and_then(|()| bench(Some("gray"))),
        Some(other) => Err(format!(
            "bench {other} (unknown; expected core, proxy, vmcp or gray)"
        )),
    }
}

/// Installs Debian packages whose command is missing: `(command, package)`.
fn install_debian(needed: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(cmd, _)| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {cmd}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("installing {}", missing.join(" "));
    let ok = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
    // Debian starts the packaged nginx as a service; the bench runs its own.
    let _ = Command::new("sh")
        .args(["-c", "command -v service >/dev/null && service nginx stop"])
        .status();
    if ok {
        Ok(())
    } else {
        Err(format!("apt-get install {}", missing.join(" ")))
    }
}

pub(crate) fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<(), String> {
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
