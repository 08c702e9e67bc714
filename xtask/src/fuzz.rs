//! `cargo xtask fuzz`: builds the libFuzzer targets of `fuzz/` with coverage instrumentation on
//! the stable toolchain (the flags cargo-fuzz passes, minus the sanitizer, which needs nightly:
//! the filter has no `unsafe`, so a memory sanitizer would find nothing safe Rust can't) and runs
//! each one from its corpus in `fuzz/corpus/<target>`.
//!
//! - `cargo xtask fuzz` — every target for [`DEFAULT_SECONDS`] seconds (the test command runs
//!   this with [`TEST_SECONDS`]).
//! - `cargo xtask fuzz --runs 2000000` — a bounded number of executions per target (the long
//!   run of RELIABILITY.md: 5 targets x 2,000,000 = 10 million).
//! - `--merge` adds the inputs that found new coverage to `fuzz/corpus/` (minimized by libFuzzer).
//! - target names after the options restrict the run.
//!
//! A crash, a panic, a timeout, an allocation above 16 MiB (`fuzz/src/lib.rs`) or an RSS above
//! [`RSS_LIMIT_MB`] fails the run; the input is left in `target/fuzz/artifacts/<target>/`.

use std::fs;
use std::process::Command;

use super::{root, sh, sh_env, step, Result};

pub const TARGETS: &[&str] = &[
    "plugin_config",
    "snapshot",
    "request",
    "mapping",
    "shared_state",
];
/// Seconds per target for a plain `cargo xtask fuzz`.
pub const DEFAULT_SECONDS: u64 = 60;
/// Seconds per target in `cargo xtask test`: a smoke run from the corpus, not a search.
pub const TEST_SECONDS: u64 = 12;
/// libFuzzer's RSS limit per target process.
const RSS_LIMIT_MB: u32 = 512;
/// Longest input tried (also `MAX_INPUT_BYTES` in fuzz/src/lib.rs).
const MAX_LEN: u32 = 16 * 1024;
/// One input taking longer than this is a finding (a hang, or super-linear matching).
const TIMEOUT_S: u32 = 10;

/// The coverage flags cargo-fuzz uses, all stable `-C` options.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing";

fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("rustc -vV: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .ok_or_else(|| "rustc -vV printed no host triple".into())
}

/// fmt and clippy over the fuzz crate (its own workspace, so the main checks don't cover it).
pub fn check() -> Result {
    step("cargo fmt --check, cargo clippy (fuzz targets)");
    sh(
        "cargo",
        &["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"],
    )?;
    // With the fuzz build's profile, target, flags and target directory, so what clippy builds
    // first (libfuzzer-sys's build script compiles libFuzzer's C++) is reused by that build.
    let triple = host_triple()?;
    sh_env(
        "cargo",
        &[
            "clippy",
            "--release",
            "--manifest-path",
            "fuzz/Cargo.toml",
            "--target-dir",
            "target/fuzz",
            "--target",
            &triple,
            "--bins",
            "--",
            "-D",
            "warnings",
        ],
        &[("RUSTFLAGS", RUSTFLAGS.into())],
    )
}

pub fn fuzz(args: &[String]) -> Result {
    let mut seconds = DEFAULT_SECONDS;
    let mut runs: Option<u64> = None;
    let mut merge = false;
    let mut targets: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let number = |v: Option<&String>| -> Result<u64> {
            v.and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{a} needs a number"))
        };
        match a.as_str() {
            "--seconds" => seconds = number(it.next())?,
            "--runs" => runs = Some(number(it.next())?),
            "--merge" => merge = true,
            other => match TARGETS.iter().find(|t| **t == other) {
                Some(t) => targets.push(t),
                None => {
                    return Err(format!(
                        "unknown fuzz argument {other:?} (targets: {})",
                        TARGETS.join(", ")
                    ))
                }
            },
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    let triple = host_triple()?;
    step("build the fuzz targets (libFuzzer, coverage-instrumented, release + overflow checks)");
    sh_env(
        "cargo",
        &[
            "build",
            "--release",
            "--manifest-path",
            "fuzz/Cargo.toml",
            "--target-dir",
            "target/fuzz",
            "--target",
            &triple,
            "--bins",
        ],
        &[("RUSTFLAGS", RUSTFLAGS.into())],
    )?;
    let mut total: u64 = 0;
    for target in targets {
        total += run_target(&triple, target, seconds, runs, merge)?;
    }
    println!("fuzz: {total} executions in all, no crash, panic, hang or oversized allocation");
    Ok(())
}

/// Runs one target; returns how many inputs it executed.
fn run_target(
    triple: &str,
    target: &str,
    seconds: u64,
    runs: Option<u64>,
    merge: bool,
) -> Result<u64> {
    let base = root().join("target/fuzz");
    let bin = base.join(triple).join("release").join(target);
    let corpus = root().join("fuzz/corpus").join(target);
    let found = base.join("found").join(target);
    let artifacts = base.join("artifacts").join(target);
    let log = base.join("logs").join(format!("{target}.log"));
    for dir in [&corpus, &found, &artifacts] {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    if let Some(parent) = log.parent() {
        fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let limit = match runs {
        Some(n) => format!("-runs={n}"),
        None => format!("-max_total_time={seconds}"),
    };
    step(&format!(
        "fuzz {target} ({})",
        limit.trim_start_matches('-')
    ));
    // New finds go to target/fuzz/found (the repository's corpus is only read), unless merged.
    let out = Command::new(&bin)
        .arg(&found)
        .arg(&corpus)
        .arg(&limit)
        .arg(format!("-max_len={MAX_LEN}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-timeout={TIMEOUT_S}"))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .current_dir(root())
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    fs::write(&log, &text).map_err(|e| e.to_string())?;
    let stat = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
            .and_then(|v| v.trim().parse().ok())
    };
    if !out.status.success() {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "fuzz target {target} failed ({}); log: {}; input in {}\n{}",
            out.status,
            log.display(),
            artifacts.display(),
            tail.join("\n")
        ));
    }
    let executed = stat("number_of_executed_units").unwrap_or(0);
    let per_second = stat("average_exec_per_sec").unwrap_or(0);
    let cov = text
        .lines()
        .rev()
        .find_map(|l| {
            l.split_once(" cov: ")
                .map(|(_, r)| r.split_whitespace().next().unwrap_or("?").to_string())
        })
        .unwrap_or_else(|| "?".into());
    println!("    {target}: {executed} executions ({per_second}/s), coverage {cov} edges");
    if merge {
        step(&format!(
            "merge new coverage of {target} into fuzz/corpus/{target}"
        ));
        let status = Command::new(&bin)
            .arg("-merge=1")
            .arg(&corpus)
            .arg(&found)
            .current_dir(root())
            .output()
            .map_err(|e| e.to_string())?
            .status;
        if !status.success() {
            return Err(format!("merging the corpus of {target} failed ({status})"));
        }
    }
    Ok(executed)
}
