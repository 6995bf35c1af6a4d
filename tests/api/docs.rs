use crate::helpers::{Backend, spawn_app};

/// The OpenAPI document is reviewed as a snapshot: an accidental API change shows up in the diff.
#[test]
fn openapi_document_matches_the_reviewed_snapshot() {
    let doc = serde_json::to_value(onboard::http::openapi()).unwrap();
    insta::assert_json_snapshot!("openapi", doc);
}

#[tokio::test]
async fn every_json_endpoint_is_documented_and_served() {
    let app = spawn_app(Backend::Sqlite).await;
    let resp = app.get("/openapi.json").await;
    assert_eq!(resp.status(), 200);
    let doc: serde_json::Value = resp.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/health", "get"),
        ("/signup", "post"),
        ("/tenant/{tenant_id}", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is documented"
        );
    }
    assert!(doc["components"]["schemas"]["SignupRequest"].is_object());
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
