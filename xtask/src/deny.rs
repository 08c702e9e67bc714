//! `cargo xtask deny` (and a step of `cargo xtask test`): `cargo deny check` over the workspace
//! and the fuzz crate: RustSec advisories, licences, duplicate major versions, crate sources
//! (configuration and every exception: `deny.toml`).
//!
//! cargo-deny is installed from crates.io at [`VERSION`] into `~/.cargo/bin` the first time
//! (a few minutes of compiling, once per machine). The advisory database comes from the snapshot
//! in `deny/` (these machines reach package registries only; `deny/README.md`), so cargo deny
//! runs `--offline`, after a `cargo fetch` has brought every crate it reads.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::{root, sh, sh_env, step, Result};

/// The cargo-deny release the checks are written for (`deny.toml`'s keys follow it).
pub const VERSION: &str = "0.20.2";
/// Where `deny.toml`'s `db-path` points (relative to the repository root).
const DB_ROOT: &str = "target/advisory-db";
/// cargo-deny's directory name for the default database URL (`https://github.com/RustSec/advisory-db`):
/// the URL's last segment and its XxHash64, as `url_to_db_path` in cargo-deny 0.20 makes it.
const DB_DIR: &str = "advisory-db-3157b0e258782691";
const SNAPSHOT: &str = "deny/advisory-db.tar.gz";
/// Two lines: the upstream commit and its ISO 8601 date.
const SNAPSHOT_COMMIT: &str = "deny/advisory-db.commit";
/// The workspace and the fuzz crate (its own workspace, with its own Cargo.lock), each with the
/// notes it silences: deny.toml serves both graphs, so each meets only part of its exceptions.
const MANIFESTS: &[(&str, &[&str])] = &[
    ("Cargo.toml", &["license-exception-not-encountered"]),
    ("fuzz/Cargo.toml", &["unmatched-skip", "unnecessary-skip"]),
];

pub fn deny() -> Result {
    install()?;
    advisory_db()?;
    for (manifest, unmet) in MANIFESTS {
        step(&format!(
            "cargo deny check ({manifest}: advisories, bans, licenses, sources)"
        ));
        sh("cargo", &["fetch", "--manifest-path", manifest])?;
        // deny.toml is read from the working directory: the repository root, for both.
        let mut args = vec!["deny", "--offline", "--manifest-path", manifest, "check"];
        for lint in *unmet {
            args.extend(["--allow", lint]);
        }
        sh("cargo", &args)?;
    }
    Ok(())
}

/// `cargo install cargo-deny` at [`VERSION`] unless that version is already on the PATH.
fn install() -> Result {
    let installed = Command::new("cargo")
        .args(["deny", "--version"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == format!("cargo-deny {VERSION}"))
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    step(&format!(
        "cargo install cargo-deny {VERSION} (once per machine: a few minutes)"
    ));
    sh(
        "cargo",
        &["install", "cargo-deny", "--version", VERSION, "--locked"],
    )
}

/// Unpacks the snapshot into a one-commit git repository dated like the upstream commit (the
/// date cargo deny's staleness limit reads), unless that snapshot is there already.
fn advisory_db() -> Result {
    let commit_file = root().join(SNAPSHOT_COMMIT);
    let wanted =
        fs::read_to_string(&commit_file).map_err(|e| format!("{}: {e}", commit_file.display()))?;
    let date = wanted
        .lines()
        .nth(1)
        .ok_or_else(|| format!("{SNAPSHOT_COMMIT}: no date on its second line"))?
        .to_string();
    let db = root().join(DB_ROOT).join(DB_DIR);
    let stamp = db.join(".git/tollgate-snapshot");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    step("unpack the RustSec advisory database snapshot (deny/)");
    let _ = fs::remove_dir_all(&db);
    fs::create_dir_all(&db).map_err(|e| format!("{}: {e}", db.display()))?;
    let dir = db.display().to_string();
    sh("tar", &["-xzf", SNAPSHOT, "-C", &dir])?;
    let git = |args: &[&str]| {
        // No hooks or signing from the machine's git configuration for this private repository.
        let mut all = vec![
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "commit.gpgsign=false",
            "-C",
            &dir,
        ];
        all.extend(args);
        sh_env(
            "git",
            &all,
            &[
                ("GIT_AUTHOR_DATE", date.clone()),
                ("GIT_COMMITTER_DATE", date.clone()),
                ("GIT_AUTHOR_NAME", "advisory-db snapshot".into()),
                ("GIT_AUTHOR_EMAIL", "snapshot@localhost".into()),
                ("GIT_COMMITTER_NAME", "advisory-db snapshot".into()),
                ("GIT_COMMITTER_EMAIL", "snapshot@localhost".into()),
            ],
        )
    };
    git(&["init", "-q", "-b", "main"])?;
    git(&["add", "-A"])?;
    git(&["commit", "-q", "-m", wanted.trim()])?;
    // cargo deny takes the newer of the commit date and .git/HEAD's mtime as the fetch time: the
    // HEAD file written just now would make any snapshot look fresh.
    sh("touch", &["-d", &date, &format!("{dir}/.git/HEAD")])?;
    fs::write(&stamp, &wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    if !Path::new(&dir).join("crates").is_dir() {
        return Err(format!("{SNAPSHOT} has no crates/ directory"));
    }
    Ok(())
}
