use crate::helpers::{Backend, spawn_app};

/// The OpenAPI document is reviewed as a snapshot: an accidental API change shows up in the diff.
#[test]
fn openapi_document_matches_the_reviewed_snapshot() {
    let doc = serde_json::to_value(onboard::http::openapi()).unwrap();
    insta::assert_json_snapshot!("openapi", doc);
}

/// A path template with its parameters filled in.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "x_probe".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether an answer came from the router's fallbacks (no such route, or not this method).
async fn is_fallback(resp: reqwest::Response) -> Option<String> {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    match status {
        405 => Some(format!("405 {body}")),
        404 if body.contains("\"route not found\"") => Some(format!("404 {body}")),
        _ => None,
    }
}

/// Every route the source declares outside the OpenAPI router (`.route("…"`), by path.
fn routes_in_source() -> std::collections::BTreeSet<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http"),
        &mut files,
    );
    let mut paths = std::collections::BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for piece in text.split(".route(").skip(1) {
            let literal = piece
                .trim_start()
                .strip_prefix('"')
                .and_then(|r| r.split('"').next());
            if let Some(path) = literal {
                paths.insert(path.to_string());
            }
        }
    }
    paths
}

#[tokio::test]
async fn every_route_is_documented_and_served() {
    let app = spawn_app(Backend::Sqlite).await;
    let resp = app.get("/openapi.json").await;
    assert_eq!(resp.status(), 200);
    let doc: serde_json::Value = resp.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(doc["components"]["schemas"]["SignupRequest"].is_object());

    // Every route the source declares is either a documented operation or a listed page.
    let pages: std::collections::BTreeSet<String> = onboard::http::PAGES
        .iter()
        .map(|(_, p)| p.to_string())
        .collect();
    let undeclared: Vec<_> = routes_in_source()
        .into_iter()
        .filter(|p| !pages.contains(p) && !paths.contains_key(p))
        .collect();
    assert!(
        undeclared.is_empty(),
        "routes neither documented nor listed: {undeclared:?}"
    );

    // Every documented operation and every page is served, with exactly its methods.
    let mut methods: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            methods
                .entry(path.clone())
                .or_default()
                .insert(method.to_uppercase());
        }
    }
    for (method, path) in onboard::http::PAGES {
        methods
            .entry(path.to_string())
            .or_default()
            .insert(method.to_string());
    }
    let mut problems = Vec::new();
    for (path, allowed) in &methods {
        let url = app.url(&concrete(path));
        for method in allowed {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let resp = app.client.request(m, &url).send().await.unwrap();
            if let Some(why) = is_fallback(resp).await {
                problems.push(format!("{method} {path} is not served: {why}"));
            }
        }
        // Any other method: a 405 whose Allow header names exactly the documented ones.
        let other = ["GET", "POST", "PUT", "PATCH", "DELETE"]
            .into_iter()
            .find(|m| !allowed.contains(*m))
            .unwrap();
        let resp = app
            .client
            .request(reqwest::Method::from_bytes(other.as_bytes()).unwrap(), &url)
            .send()
            .await
            .unwrap();
        if resp.status() != 405 {
            problems.push(format!(
                "{other} {path} answered {}, not 405",
                resp.status()
            ));
            continue;
        }
        let allow: std::collections::BTreeSet<String> = resp
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty() && m != "HEAD")
            .collect();
        if &allow != allowed {
            problems.push(format!(
                "405 on {path} allows {allow:?}, documented {allowed:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test]
async fn docs_page_renders_without_fetching_anything_from_the_internet() {
    let app = spawn_app(Backend::Sqlite).await;
    let resp = app.get("/docs").await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains("/openapi.json"));
    for external in ["http://", "https://", "//cdn", "src=\"//"] {
        assert!(!html.contains(external), "docs page references {external}");
    }
}
