//! The contract: `/openapi.json` describes exactly the routes the router answers (method and
//! path, both ways), the generated document is OpenAPI 3.1 that survives a serde round trip, and
//! every `$ref` in it resolves. Nothing here reads source text: the router's own route table is
//! read from the router (its `Debug` output), the document from the handler that serves it.

use std::collections::BTreeSet;

use serde_json::Value;

use tollgate_control_plane::http::{api_doc, router};

use crate::support::{TestApp, ADMIN_TOKEN};

/// The HTTP methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The methods the API uses, as axum's `MethodRouter` prints them (`get: Route`, `post: None`).
/// `head` is left out: axum answers HEAD wherever there is a GET, and the document does not list it.
const ROUTED_METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Pages for browsers, not API: the developer portal, the admin portal (under `/admin` but not
/// `/admin/api/`). Out of the document's scope.
fn is_portal(path: &str) -> bool {
    path == "/portal"
        || path.starts_with("/portal/")
        || (path == "/admin" || path.starts_with("/admin/")) && !path.starts_with("/admin/api/")
}

/// `/invoices/{id}/lines/{line_id}` -> `/invoices/{}/lines/{}`: parameter names may differ.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            c if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

/// (method, path) of every API route the router holds (the portals' pages left out).
fn routed(app: &TestApp) -> BTreeSet<(String, String)> {
    route_table(app)
        .into_iter()
        .filter(|(_, path)| !is_portal(path))
        .collect()
}

/// (method, path) of every route the router holds, portals included, read from its `Debug`
/// output: axum prints its path table (`RouteId(3): "/services/{id}"`) and each route's method
/// router (`get: Route, post: None`), nested routers already flattened with their prefixes. The
/// audit walk reads the admin portal's form posts from it too.
pub fn route_table(app: &TestApp) -> BTreeSet<(String, String)> {
    let text = format!("{:?}", router(app.state.clone()));
    // Only the main path router: the fallback router (after `fallback_router:`) holds catch-alls.
    let text = text
        .split("fallback_router:")
        .next()
        .expect("split yields at least one part");
    let mut paths = std::collections::BTreeMap::new();
    let mut endpoints = std::collections::BTreeMap::new();
    let mut rest = text;
    while let Some(at) = rest.find("RouteId(") {
        rest = &rest[at + "RouteId(".len()..];
        let close = rest.find(')').expect("RouteId(N)");
        let id: usize = rest[..close].trim().parse().expect("a route id");
        let after = rest[close..]
            .strip_prefix("): ")
            .expect("RouteId(N): value");
        if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').expect("a closing quote");
            paths.insert(id, quoted[..end].to_string());
        } else {
            let end = after.find("RouteId(").unwrap_or(after.len());
            endpoints.insert(id, after[..end].to_string());
        }
    }
    assert!(
        paths.len() >= 40 && paths.len() == endpoints.len(),
        "axum's Debug output changed shape: {} paths, {} endpoints",
        paths.len(),
        endpoints.len()
    );
    let mut out = BTreeSet::new();
    for (id, path) in paths {
        let endpoint = &endpoints[&id];
        assert!(
            endpoint.starts_with("MethodRouter("),
            "{path}: not a method router ({endpoint}); the document cannot describe a service"
        );
        for method in ROUTED_METHODS {
            if endpoint.contains(&format!(" {method}: Route")) {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
}

/// (method, path) of every operation of `doc`.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_served_document_describes_every_route_and_only_routes() {
    let app = TestApp::new().await;
    let doc = app.client("", None).get("/openapi.json").await.json();
    let generated = serde_json::to_value(api_doc::generated()).unwrap();
    assert_eq!(
        doc, generated,
        "/openapi.json is not the generated document"
    );
    let documented = documented(&doc);
    let routed = routed(&app);
    // The parse found the API, not just the portal: a route of each part is there.
    for known in [
        ("get", "/healthz"),
        ("post", "/admin/api/v1/services"),
        ("get", "/api/v1/invoices"),
        ("get", "/gateway/v1/services/{id}/snapshot"),
    ] {
        assert!(
            routed.contains(&(known.0.to_string(), known.1.to_string())),
            "{known:?} not found in the router's table: {routed:#?}"
        );
    }
    let documented_shapes: BTreeSet<_> = documented
        .iter()
        .map(|(m, p)| (m.clone(), shape(p)))
        .collect();
    let undocumented: Vec<_> = routed
        .iter()
        .filter(|(m, p)| !documented_shapes.contains(&(m.clone(), shape(p))))
        .collect();
    assert!(
        undocumented.is_empty(),
        "routed but not in /openapi.json: {undocumented:#?}"
    );

    // The other way: every documented operation is answered by a route. A documented path the
    // router has not (`/invoices/{id}.pdf` is served by `/invoices/{id}`) is called: whatever it
    // answers, it is not "no such route" nor "method not allowed".
    let routed_shapes: BTreeSet<_> = routed.iter().map(|(m, p)| (m.clone(), shape(p))).collect();
    let admin = app.client("", Some(ADMIN_TOKEN));
    let mut missing = Vec::new();
    for (method, path) in &documented {
        if routed_shapes.contains(&(method.clone(), shape(path))) {
            continue;
        }
        let concrete = path
            .split('/')
            .map(|seg| match seg.find('}') {
                Some(end) if seg.starts_with('{') => format!("does-not-exist{}", &seg[end + 1..]),
                _ => seg.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let body =
            matches!(method.as_str(), "post" | "put" | "patch").then(|| serde_json::json!({}));
        let r = admin
            .request(&method.to_uppercase(), &concrete, body.as_ref(), &[])
            .await;
        let code = serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|b| b["error"]["code"].as_str().map(str::to_string));
        if matches!(
            code.as_deref(),
            Some("route_not_found" | "method_not_allowed")
        ) {
            missing.push(format!("{method} {path}: {} {}", r.status, r.text()));
        }
    }
    assert!(
        missing.is_empty(),
        "documented but not routed: {missing:#?}"
    );
}

/// Every `"$ref"` string anywhere in `value`.
fn refs<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_generated_document_is_openapi_3_1_and_every_ref_resolves() {
    let doc = serde_json::to_value(api_doc::generated()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0", "{}", doc["openapi"]);
    // A serde round trip through utoipa's own model loses nothing: the document is well-typed
    // OpenAPI, not free-form JSON.
    let back: utoipa::openapi::OpenApi = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(serde_json::to_value(back).unwrap(), doc);
    assert!(
        doc.get("servers").is_none(),
        "servers: the document describes itself"
    );

    let mut found = Vec::new();
    refs(&doc, &mut found);
    let dangling: Vec<_> = found
        .iter()
        .filter(|r| {
            r.strip_prefix('#')
                .is_none_or(|pointer| doc.pointer(pointer).is_none())
        })
        .collect();
    assert!(
        dangling.is_empty(),
        "$refs that do not resolve: {dangling:?}"
    );

    // Every operation names a declared tag, says what its answers carry, and has its own id.
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(
                t["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{t}"
            );
            t["name"].as_str().unwrap()
        })
        .collect();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let where_ = format!("{method} {path}");
            let op_tags = op["tags"]
                .as_array()
                .unwrap_or_else(|| panic!("{where_}: no tag"));
            for t in op_tags {
                assert!(
                    tags.contains(t.as_str().unwrap()),
                    "{where_}: undeclared tag {t}"
                );
            }
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{where_}: no responses"
            );
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{where_}: no operationId"));
            assert!(
                ids.insert(id.to_string()),
                "{where_}: operationId {id} used twice"
            );
        }
    }
    assert!(!ids.is_empty(), "no operation in the generated document");
}
