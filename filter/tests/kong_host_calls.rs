//! Kong (ngx_wasm_module, Kong 3.4–3.9) links every proxy-wasm import but traps the VM when the
//! filter *calls* one it does not implement. The Rust SDK's trait objects reference nearly all
//! imports, so the wasm import section proves nothing; what the filter can call is decided by its
//! source. This test holds the source to three rules:
//!
//! 1. only `src/host/wasm.rs` declares host imports or touches the SDK's host-calling API;
//! 2. `src/host/wasm.rs` imports nothing Kong lacks, and the metric imports (missing from Kong
//!    builds without metrics support) are only reachable with `stats` on;
//! 3. the response-headers callback never pauses (Kong cannot resume there).

#![allow(clippy::unwrap_used)] // a test crate: a failed unwrap is a failed test

use std::fs;
use std::path::{Path, PathBuf};

/// Implemented by Envoy and by every ngx_wasm_module bundled with Kong 3.4–3.9.
const KONG_IMPLEMENTS: &[&str] = &[
    "proxy_log",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_get_buffer_bytes",
    "proxy_get_header_map_value",
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_add_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_send_local_response",
    "proxy_http_call",
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_get_property",
    "proxy_set_property",
];

/// Not implemented by older ngx_wasm_module builds: allowed only behind the `stats` switch.
const KONG_METRICS: &[&str] = &["proxy_define_metric", "proxy_increment_metric"];

/// Calling any of these traps the VM in Kong.
const KONG_TRAPS: &[&str] = &[
    "proxy_grpc_call",
    "proxy_grpc_stream",
    "proxy_grpc_send",
    "proxy_grpc_cancel",
    "proxy_grpc_close",
    "proxy_get_status",
    "proxy_resolve_shared_queue",
    "proxy_get_log_level",
    "proxy_call_foreign_function",
    "proxy_continue_response",
    "proxy_resume_downstream",
    "proxy_resume_upstream",
    "proxy_close_stream",
    "proxy_record_metric",
    "proxy_get_metric",
];

/// SDK methods that call the host (and panic on unexpected statuses); only `host/wasm.rs` may
/// reach the host, so none of these may be called anywhere.
const SDK_HOST_METHODS: &[&str] = &[
    "get_current_time",
    "get_property",
    "set_property",
    "get_shared_data",
    "set_shared_data",
    "register_shared_queue",
    "resolve_shared_queue",
    "dequeue_shared_queue",
    "enqueue_shared_queue",
    "dispatch_http_call",
    "get_http_call_response_headers",
    "get_http_call_response_body",
    "dispatch_grpc_call",
    "open_grpc_stream",
    "send_grpc_stream_message",
    "cancel_grpc_call",
    "cancel_grpc_stream",
    "close_grpc_stream",
    "get_grpc_status",
    "call_foreign_function",
    "set_tick_period",
    "get_vm_configuration",
    "get_plugin_configuration",
    "get_http_request_header",
    "get_http_request_headers",
    "set_http_request_header",
    "add_http_request_header",
    "get_http_response_header",
    "get_http_response_headers",
    "set_http_response_header",
    "add_http_response_header",
    "resume_http_request",
    "resume_http_response",
    "send_http_response",
    "send_grpc_response",
    "get_log_level",
    "set_log_level",
];

/// The one module that reaches the proxy-wasm host.
const HOST: &str = "src/host/wasm.rs";

/// Test-only modules (a fake host and the link's test harness): never in the wasm module, so
/// the reachability rules below do not count them. `test_only_modules_are_test_only` checks it.
const TEST_ONLY: &[&str] = &["src/host/fake.rs", "src/link/harness.rs"];

fn sources() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    out
}

/// Names declared as `fn proxy_*(` inside `extern "C"` blocks.
fn imports(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_extern = false;
    let mut depth = 0i32;
    for line in src.lines() {
        let t = line.trim();
        if t.starts_with("extern \"C\"") {
            in_extern = true;
        }
        if in_extern {
            depth += t.matches('{').count() as i32 - t.matches('}').count() as i32;
            if let Some(rest) = t.strip_prefix("fn ") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
            if depth == 0 && t.contains('}') {
                in_extern = false;
            }
        }
    }
    out
}

/// Violations of rule 1 in a non-host source file.
fn reaches_host(src: &str) -> Vec<String> {
    let mut found = Vec::new();
    for pattern in [
        "extern \"C\"",
        "hostcalls::",
        "proxy_wasm::set_log_level",
        "#[link(",
    ] {
        if src.contains(pattern) {
            found.push(pattern.to_string());
        }
    }
    for m in SDK_HOST_METHODS {
        for call in [format!(".{m}("), format!("::{m}(")] {
            if src.contains(&call) {
                found.push(call);
            }
        }
    }
    found
}

/// The body of the first `fn name(...)` or `fn name<...>(...)`, by brace matching.
fn fn_body<'s>(src: &'s str, name: &str) -> Option<&'s str> {
    let start = [format!("fn {name}("), format!("fn {name}<")]
        .iter()
        .filter_map(|sig| src.find(sig.as_str()))
        .min()?;
    body_from(src, start)
}

/// The body of the function whose signature starts at `start`.
fn body_from(src: &str, start: usize) -> Option<&str> {
    let open = start + src[start..].find('{')?;
    let mut depth = 0;
    for (i, c) in src[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&src[open..open + i + 1]);
                }
            }
            _ => {}
        }
    }
    None
}

fn is(path: &Path, file: &str) -> bool {
    path.ends_with(file)
}

#[test]
fn only_the_host_module_reaches_the_host() {
    let mut bad = Vec::new();
    for (path, src) in sources() {
        if is(&path, HOST) {
            continue;
        }
        for v in reaches_host(&src) {
            bad.push(format!("{}: {v}", path.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "host calls outside {HOST}:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_host_module_imports_only_what_kong_implements() {
    let (_, src) = sources().into_iter().find(|(p, _)| is(p, HOST)).unwrap();
    let imported = imports(&src);
    assert!(imported.len() >= 8, "parsed too few imports: {imported:?}");
    for name in &imported {
        assert!(
            !KONG_TRAPS.contains(&name.as_str()),
            "{name} traps the VM in Kong"
        );
        assert!(
            KONG_IMPLEMENTS.contains(&name.as_str()) || KONG_METRICS.contains(&name.as_str()),
            "{name} is not known to be implemented by Kong 3.4-3.9; check ngx_wasm_module first"
        );
    }
}

#[test]
fn metric_calls_run_only_with_stats_on() {
    let all = sources();
    let file = |name: &str| &all.iter().find(|(p, _)| is(p, name)).unwrap().1;
    let (host, worker) = (file(HOST), file("src/worker.rs"));
    // proxy_define_metric is called from exactly one host function...
    assert_eq!(
        host.matches("proxy_define_metric(").count(),
        2,
        "declaration + one call"
    );
    let define = fn_body(host, "define_counter").unwrap();
    assert!(define.contains("proxy_define_metric("));
    // ...proxy_increment_metric only with an id that define_counter returned...
    let increment = fn_body(host, "increment").unwrap();
    assert!(
        increment.contains("if let Some(id) = counter"),
        "{increment}"
    );
    // ...define_counter only from Counter::define, Counter::define only from Stats::define...
    let counter_define = fn_body(worker, "define").unwrap();
    assert_eq!(worker.matches(".define_counter(").count(), 1);
    assert_eq!(counter_define.matches(".define_counter(").count(), 1);
    let stats_define = body_from(worker, worker.find("pub fn define<").unwrap()).unwrap();
    assert_eq!(
        worker.matches("Counter::define(").count(),
        stats_define.matches("Counter::define(").count()
    );
    // ...and Stats::define only in the configure step both shells share (`worker::configure`),
    // where the configuration turns stats on.
    for (path, src) in &all {
        if src.contains("define_counter(") {
            assert!(
                path.starts_with(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/host"))
                    || is(path, "src/worker.rs"),
                "{} defines metrics",
                path.display()
            );
        }
        let calls = src.matches("Stats::define").count();
        if is(path, "src/worker.rs") {
            assert_eq!(calls, 1);
        } else if !TEST_ONLY.iter().any(|t| is(path, t)) {
            assert_eq!(calls, 0, "{}", path.display());
        }
    }
    // rustfmt may break the chain across lines: compare without whitespace.
    let configure = body_from(worker, worker.find("pub fn configure<").unwrap()).unwrap();
    let configure: String = configure.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(configure.contains("config.stats.then(||Stats::define("));
}

#[test]
fn test_only_modules_are_test_only() {
    let all = sources();
    let file = |name: &str| &all.iter().find(|(p, _)| is(p, name)).unwrap().1;
    assert!(file("src/host/mod.rs").contains("#[cfg(test)]\npub mod fake;"));
    assert!(file("src/link/mod.rs").contains("#[cfg(test)]\nmod harness;"));
    assert!(file("src/host/mod.rs")
        .contains("#[cfg(all(target_arch = \"wasm32\", not(test)))]\npub mod wasm;"));
}

#[test]
fn response_headers_never_pause() {
    let all = sources();
    let glue = &all
        .iter()
        .find(|(p, _)| p.ends_with("src/glue.rs"))
        .unwrap()
        .1;
    let body = fn_body(glue, "on_http_response_headers").unwrap();
    assert!(body.contains("Action::Continue"));
    for pause in ["Action::Pause", "StopIteration"] {
        assert!(
            !body.contains(pause),
            "on_http_response_headers must not pause: {body}"
        );
    }
    assert!(
        fn_body(glue, "on_http_response_body").is_none(),
        "no response body callback"
    );
}

/// Kong traps the VM when a filter sets a `:path` that holds a query string, so `:path` is only
/// ever written by `host::wasm::set_request_path`, which keeps the query out of it on nginx.
#[test]
fn path_is_set_only_where_the_query_is_kept_apart_on_kong() {
    let write = "set_request_header(\":path\"";
    let mut total = 0;
    let mut guarded = 0;
    for (path, src) in sources() {
        total += src.matches(write).count();
        if is(&path, HOST) {
            let body = fn_body(&src, "set_request_path").unwrap();
            assert!(body.contains("is_nginx()") && body.contains("set_property(NGX_ARGS"));
            guarded += body.matches(write).count();
        }
    }
    assert!(guarded > 0);
    assert_eq!(
        total, guarded,
        ":path written outside host::wasm::set_request_path"
    );
}

#[test]
fn the_checks_catch_a_violation() {
    // The checker itself must be able to fail.
    assert!(!reaches_host("fn f(&self) { self.dispatch_grpc_call(1); }").is_empty());
    assert!(!reaches_host("let x = proxy_wasm::hostcalls::get_log_level();").is_empty());
    let imported =
        imports("extern \"C\" {\n    fn proxy_resolve_shared_queue(a: u32) -> u32;\n}\n");
    assert_eq!(imported, vec!["proxy_resolve_shared_queue"]);
    assert!(KONG_TRAPS.contains(&imported[0].as_str()));
    assert!(fn_body("fn a() { if x { Action::Pause } else { y } }", "a")
        .unwrap()
        .contains("Action::Pause"));
}
