//! The server configured with Pinecone and with an OpenAI-compatible embeddings API, end to end
//! against the local fakes of [`crate::fakes`]: provisioning, uploads, queries, deletes, outages
//! and refusals, on both stores.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::fakes::{
    EmbeddingsFailure, FakeEmbeddings, FakePinecone, OPENAI_INVALID_KEY_MESSAGE,
    PINECONE_API_VERSION, Recorded, cosine, fake_embedding,
};
use crate::helpers::{Backend, TestApp, assert_error, eventually, spawn_app_with};
use crate::store_tests;
use onboard::domain::TenantId;

store_tests!(
    pinecone_backs_provisioning_documents_queries_and_deletes,
    a_pinecone_index_with_other_dimensions_fails_provisioning_clearly,
    pinecone_outages_are_retried_and_then_reported,
    a_configured_embeddings_api_embeds_documents_and_queries,
    embeddings_failures_are_clear_errors,
    an_upload_failing_midway_leaves_no_vectors_in_pinecone,
);

const PINECONE_KEY: &str = "pcsk_fake_5d1c0ffee0123456789abcdef";
const EMBEDDINGS_KEY: &str = "sk-fake-embeddings-0123456789abcdef";
const EMBEDDINGS_MODEL: &str = "fake-embed-small";
/// Dimensions of the built-in embedder.
const BUILTIN_DIMENSION: usize = 384;
const SAMPLE_IDS: [&str; 3] = ["sample_doc_1", "sample_doc_2", "sample_doc_3"];

async fn pinecone_app(
    backend: Backend,
    pinecone: &FakePinecone,
    extra: &[(&str, &str)],
) -> TestApp {
    let host = pinecone.uri();
    let mut overrides = vec![
        ("PINECONE_API_KEY", PINECONE_KEY),
        ("PINECONE_INDEX_HOST", host.as_str()),
    ];
    overrides.extend_from_slice(extra);
    let app = spawn_app_with(backend, &overrides).await;
    assert_eq!(app.state.vectors.backend(), "pinecone");
    assert_eq!(app.state.embedder.name(), "builtin");
    app
}

async fn embeddings_app(backend: Backend, embeddings: &FakeEmbeddings) -> TestApp {
    let url = embeddings.base_url();
    let app = spawn_app_with(
        backend,
        &[
            ("EMBEDDINGS_URL", url.as_str()),
            ("EMBEDDINGS_API_KEY", EMBEDDINGS_KEY),
            ("EMBEDDINGS_MODEL", EMBEDDINGS_MODEL),
            ("EMBEDDINGS_DIMENSION", "16"),
        ],
    )
    .await;
    assert_eq!(app.state.embedder.name(), "openai-compatible");
    assert_eq!(app.state.vectors.backend(), "embedded");
    assert_eq!(app.state.vectors.dimension(), 16);
    app
}

/// The ids of the tenant's listed documents.
async fn listed(app: &TestApp, key: &str) -> BTreeSet<String> {
    let resp = app.call(Method::GET, "/v1/documents?limit=100", key).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

fn result_ids(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["document_id"].as_str().unwrap().to_string())
        .collect()
}

/// Rows of our own `vectors` table, in `namespace` or in all.
async fn our_vector_rows(app: &TestApp, namespace: Option<&str>) -> i64 {
    onboard::with_pool!(&app.store, |pool| {
        match namespace {
            Some(ns) => sqlx::query_scalar("SELECT COUNT(*) FROM vectors WHERE namespace = $1")
                .bind(ns)
                .fetch_one(pool)
                .await
                .unwrap(),
            None => sqlx::query_scalar("SELECT COUNT(*) FROM vectors")
                .fetch_one(pool)
                .await
                .unwrap(),
        }
    })
}

/// The stored embeddings of `namespace` in our own `vectors` table.
async fn our_embeddings(app: &TestApp, namespace: &str) -> Vec<Vec<u8>> {
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query_scalar("SELECT embedding FROM vectors WHERE namespace = $1")
            .bind(namespace)
            .fetch_all(pool)
            .await
            .unwrap()
    })
}

async fn namespace_dimension(app: &TestApp, namespace: &str) -> i64 {
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query_scalar("SELECT dimension FROM vector_namespaces WHERE name = $1")
            .bind(namespace)
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

async fn milestone_names(app: &TestApp, tenant: &TenantId) -> Vec<String> {
    app.store
        .milestones(tenant)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.milestone)
        .collect()
}

/// The request carries Pinecone's headers exactly once each, and no other credential.
fn assert_pinecone_headers(r: &Recorded) {
    assert_eq!(r.method, "POST", "{r:?}");
    assert_eq!(r.header("api-key"), Some(PINECONE_KEY), "{r:?}");
    assert_eq!(
        r.header("x-pinecone-api-version"),
        Some(PINECONE_API_VERSION),
        "{r:?}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert_eq!(r.header("accept"), Some("application/json"), "{r:?}");
    assert!(r.header_values("authorization").is_empty(), "{r:?}");
}

fn vectors_of(body: &Value) -> &Vec<Value> {
    body["vectors"].as_array().expect("an upsert has vectors")
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Three paragraphs of ~450 characters: more than one chunk.
fn long_sourdough_text() -> String {
    let paragraph = |topic: &str| {
        format!(
            "{topic}: feed the sourdough starter with rye flour and water every morning, keep it \
             warm, and wait until it doubles. Mix the levain into the dough with salt, fold the \
             dough every half hour, then let the dough rise slowly overnight in a cool place. \
             Shape the loaf, score the crust with a razor and bake the bread in a preheated dutch \
             oven, lid on for twenty minutes and lid off until the crust is deep brown and crackles."
        )
    };
    [
        paragraph("Starter"),
        paragraph("Levain"),
        paragraph("Baking"),
    ]
    .join("\n\n")
}

// ------------------------------------------------------------------------------------ Pinecone

async fn pinecone_backs_provisioning_documents_queries_and_deletes(backend: Backend) {
    let pinecone = FakePinecone::start(PINECONE_KEY, BUILTIN_DIMENSION).await;
    let app = pinecone_app(backend, &pinecone, &[]).await;
    let t = app.fresh_tenant("pinecone").await;
    let key = &t.api_key;
    let ns = t.tenant_id.clone();

    // Provisioning checked the index, then upserted the sample documents into the tenant's
    // namespace, with Pinecone's headers on every request.
    let requests = pinecone.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_pinecone_headers(r);
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(requests[0].path, "/describe_index_stats");
    assert_eq!(requests[0].body, json!({}));
    let upserts = pinecone.requests_to("/vectors/upsert");
    assert!(!upserts.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r.path == "/describe_index_stats" || r.path == "/vectors/upsert"),
        "{requests:?}"
    );
    let mut sample_docs = BTreeSet::new();
    let mut sample_vectors = 0;
    for u in &upserts {
        assert_eq!(u.body["namespace"], ns.as_str());
        for v in vectors_of(&u.body) {
            sample_vectors += 1;
            assert_eq!(v["values"].as_array().unwrap().len(), BUILTIN_DIMENSION);
            let meta = &v["metadata"];
            assert_eq!(meta["sample"], true, "{v}");
            let doc = meta["document_id"].as_str().unwrap();
            assert_eq!(
                v["id"],
                format!("{doc}#{}", meta["chunk"].as_u64().unwrap()).as_str()
            );
            assert!(!meta["text"].as_str().unwrap().is_empty());
            sample_docs.insert(doc.to_string());
        }
    }
    let want_samples: BTreeSet<String> = SAMPLE_IDS.iter().map(|s| s.to_string()).collect();
    assert_eq!(sample_docs, want_samples);
    assert_eq!(pinecone.count(&ns), sample_vectors);
    assert_eq!(
        pinecone.total(),
        sample_vectors,
        "nothing outside the namespace"
    );
    assert_eq!(listed(&app, key).await, want_samples);

    // An upload is upserted as `{doc_id}#0…` with the document's metadata.
    pinecone.clear_requests();
    let text = long_sourdough_text();
    let doc = app.upload(key, "Sourdough baking", &text).await;
    let doc_id = doc["id"].as_str().unwrap().to_string();
    let chunks = doc["chunk_count"].as_u64().unwrap() as usize;
    assert!(chunks >= 2, "{doc}");
    let chunk_ids: Vec<String> = (0..chunks).map(|i| format!("{doc_id}#{i}")).collect();
    let upserts = pinecone.requests_to("/vectors/upsert");
    assert_eq!(upserts.len(), 1, "{upserts:?}");
    assert_pinecone_headers(&upserts[0]);
    assert_eq!(upserts[0].body["namespace"], ns.as_str());
    assert_eq!(upserts[0].response, json!({"upsertedCount": chunks}));
    let sent = vectors_of(&upserts[0].body);
    let sent_ids: Vec<&str> = sent.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(sent_ids, chunk_ids);
    for (i, v) in sent.iter().enumerate() {
        assert_eq!(v["values"].as_array().unwrap().len(), BUILTIN_DIMENSION);
        assert_eq!(v["metadata"]["document_id"], doc_id.as_str());
        assert_eq!(v["metadata"]["title"], "Sourdough baking");
        assert_eq!(v["metadata"]["chunk"], i);
        assert_eq!(v["metadata"]["sample"], false);
    }
    assert!(chunk_ids.iter().all(|id| pinecone.ids(&ns).contains(id)));
    assert_eq!(pinecone.count(&ns), sample_vectors + chunks);

    // A query is answered by Pinecone: the hits are the fake's matches, in its order.
    pinecone.clear_requests();
    let body = app
        .query_ok(
            key,
            "how long should the sourdough dough rise before I bake the bread",
            3,
        )
        .await;
    let queries = pinecone.requests_to("/query");
    assert_eq!(queries.len(), 1, "{queries:?}");
    let q = &queries[0];
    assert_pinecone_headers(q);
    assert_eq!(q.body["namespace"], ns.as_str());
    assert_eq!(q.body["topK"], 3);
    assert_eq!(q.body["includeMetadata"], true);
    assert_eq!(q.body["includeValues"], false);
    assert_eq!(
        q.body["vector"].as_array().unwrap().len(),
        BUILTIN_DIMENSION
    );
    let matches = q.response["matches"].as_array().unwrap();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results.len(), matches.len());
    for (r, m) in results.iter().zip(matches) {
        assert_eq!(r["document_id"], m["metadata"]["document_id"], "{body}");
        assert_eq!(r["chunk"], m["metadata"]["chunk"]);
        assert_eq!(r["sample"], m["metadata"]["sample"]);
        let (got, want) = (r["score"].as_f64().unwrap(), m["score"].as_f64().unwrap());
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
    assert_eq!(results[0]["document_id"], doc_id.as_str(), "{body}");
    assert_eq!(results[0]["title"], "Sourdough baking");
    assert!(!results[0]["snippet"].as_str().unwrap().is_empty());

    // Counting goes to Pinecone's stats; none of the tenant's vectors are in our own table.
    pinecone.clear_requests();
    let counted = app.state.vectors.count(&ns).await.unwrap();
    assert_eq!(counted as usize, pinecone.count(&ns));
    assert_eq!(counted as usize, sample_vectors + chunks);
    let stats = pinecone.requests_to("/describe_index_stats");
    assert_eq!(stats.len(), 1);
    assert_eq!(
        stats[0].response["namespaces"][&ns]["vectorCount"],
        sample_vectors + chunks
    );
    assert_eq!(our_vector_rows(&app, Some(&ns)).await, 0);
    assert_eq!(our_vector_rows(&app, None).await, 0);
    assert!(app.state.vectors.namespace_exists(&ns).await.unwrap());

    // A delete removes exactly the document's chunks from Pinecone, then the document.
    pinecone.clear_requests();
    let resp = app
        .authed(Method::DELETE, &format!("/v1/documents/{doc_id}"), key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let deletes = pinecone.requests_to("/vectors/delete");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_pinecone_headers(&deletes[0]);
    assert_eq!(deletes[0].body["namespace"], ns.as_str());
    assert_eq!(string_list(&deletes[0].body["ids"]), chunk_ids);
    assert!(deletes[0].body.get("deleteAll").is_none());
    assert_eq!(deletes[0].status, 200);
    assert!(
        pinecone
            .ids(&ns)
            .iter()
            .all(|id| !id.starts_with(&format!("{doc_id}#")))
    );
    assert_eq!(pinecone.count(&ns), sample_vectors);
    assert_eq!(listed(&app, key).await, want_samples);
    let resp = app
        .authed(Method::GET, &format!("/v1/documents/{doc_id}"), key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // It is no longer found; the samples still are.
    let body = app
        .query_ok(
            key,
            "how long should the sourdough dough rise before I bake the bread",
            10,
        )
        .await;
    let ids = result_ids(&body);
    assert!(!ids.contains(&doc_id), "{body}");
    assert_eq!(ids.len(), sample_vectors, "{body}");
    let counted = app.state.vectors.count(&ns).await.unwrap();
    assert_eq!(counted as usize, pinecone.count(&ns));
    assert_eq!(our_vector_rows(&app, None).await, 0);
}

async fn a_pinecone_index_with_other_dimensions_fails_provisioning_clearly(backend: Backend) {
    let pinecone = FakePinecone::start(PINECONE_KEY, 1536).await;
    let app = pinecone_app(
        backend,
        &pinecone,
        &[
            ("MAX_PROVISIONING_RETRIES", "1"),
            ("JOB_BACKOFF_BASE_MS", "10"),
        ],
    )
    .await;
    let email = format!("dims-{}@example.com", ulid::Ulid::new());
    let (tenant_id, session) = app.checkout(&email, "starter").await;
    let resp = app.dev_checkout(&session, "pay").await;
    assert_eq!(resp.status(), 303);

    app.wait_for_status(&tenant_id, "failed", 20).await;
    // The reason is for operators; the tenant's public status never carries it.
    let reason = internal_reason(&app, &tenant_id).await;
    assert!(
        reason.contains("384") && reason.contains("1536") && reason.contains("namespace"),
        "{reason}"
    );
    assert!(reason.contains("after 1 attempts"), "{reason}");
    // The index was asked, and nothing was written to it or to our tables.
    let stats = pinecone.requests_to("/describe_index_stats");
    assert!(!stats.is_empty());
    stats.iter().for_each(assert_pinecone_headers);
    assert!(pinecone.requests_to("/vectors/upsert").is_empty());
    assert_eq!(pinecone.total(), 0);
    assert_eq!(our_vector_rows(&app, None).await, 0);
    let path = app.status_path(&TenantId::parse(&tenant_id).unwrap()).await;
    assert_eq!(path.last().map(String::as_str), Some("failed"), "{path:?}");
}

async fn pinecone_outages_are_retried_and_then_reported(backend: Backend) {
    let pinecone = FakePinecone::start(PINECONE_KEY, BUILTIN_DIMENSION).await;
    let app = pinecone_app(backend, &pinecone, &[]).await;
    let t = app.fresh_tenant("outage").await;
    let key = &t.api_key;
    let ns = t.tenant_id.clone();
    let tid = TenantId::parse(&ns).unwrap();
    let samples = pinecone.count(&ns);
    assert!(samples > 0);

    // A 503 and a 429, then success: the upload goes through, the same body three times.
    pinecone.clear_requests();
    pinecone.fail_next(&[503, 429]);
    let doc = app
        .upload(
            key,
            "Kubernetes autoscaling",
            "The horizontal pod autoscaler adds replicas when CPU passes the target.",
        )
        .await;
    let doc_id = doc["id"].as_str().unwrap().to_string();
    let attempts = pinecone.requests_to("/vectors/upsert");
    let statuses: Vec<u16> = attempts.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 429, 200]);
    assert!(attempts.iter().all(|a| a.body == attempts[0].body));
    attempts.iter().for_each(assert_pinecone_headers);
    assert!(pinecone.ids(&ns).contains(&format!("{doc_id}#0")));
    assert_eq!(pinecone.count(&ns), samples + 1);

    // Pinecone down for good: 503 after the retries, and nothing is left half-written.
    pinecone.clear_requests();
    pinecone.fail_always(Some(503));
    let resp = app
        .try_upload(
            key,
            "Quarterly tax filing",
            "Estimated tax payments are due each quarter.",
        )
        .await;
    let err = assert_error(resp, 503, "vector_store_unavailable").await;
    assert_no_provider_words(&err);
    let attempts = pinecone.requests_to("/vectors/upsert");
    assert_eq!(attempts.len(), 3, "three attempts: {attempts:?}");
    assert!(attempts.iter().all(|a| a.status == 503));
    // Queries and deletes fail the same way, and a failed delete keeps the document.
    let resp = app.query(key, "pod autoscaler", 3).await;
    assert_error(resp, 503, "vector_store_unavailable").await;
    let resp = app
        .authed(Method::DELETE, &format!("/v1/documents/{doc_id}"), key)
        .send()
        .await
        .unwrap();
    assert_error(resp, 503, "vector_store_unavailable").await;
    pinecone.fail_always(None);

    let mut want: BTreeSet<String> = SAMPLE_IDS.iter().map(|s| s.to_string()).collect();
    want.insert(doc_id.clone());
    assert_eq!(
        listed(&app, key).await,
        want,
        "the failed upload is not listed"
    );
    assert_eq!(app.store.count_documents(&tid).await.unwrap(), 1);
    assert_eq!(pinecone.count(&ns), samples + 1);
    assert!(
        pinecone
            .ids(&ns)
            .iter()
            .all(|id| id.starts_with("sample_") || id.starts_with(&format!("{doc_id}#")))
    );
    let body = app
        .query_ok(key, "horizontal pod autoscaler replicas", 1)
        .await;
    assert_eq!(result_ids(&body), [doc_id.as_str()]);

    // Our key no longer valid at Pinecone: a 401, not retried, is a 502 naming the refusal.
    pinecone.set_api_key("pcsk_rotated_0000000000000000");
    pinecone.clear_requests();
    let resp = app
        .try_upload(key, "Rotated", "written with a revoked Pinecone key")
        .await;
    let err = assert_error(resp, 502, "vector_store_error").await;
    assert_no_provider_words(&err);
    let attempts = pinecone.requests_to("/vectors/upsert");
    assert_eq!(attempts.len(), 1, "a 401 is not retried: {attempts:?}");
    assert_eq!(attempts[0].status, 401);
    assert_eq!(listed(&app, key).await, want);
    let resp = app.query(key, "pod autoscaler", 3).await;
    assert_error(resp, 502, "vector_store_error").await;
    assert_eq!(pinecone.count(&ns), samples + 1);
}

/// A handbook of `paragraphs` paragraphs of ~600 characters, one chunk each.
fn handbook(paragraphs: usize) -> String {
    (0..paragraphs)
        .map(|i| {
            format!(
                "Section {i} of the operations handbook. On-call engineers acknowledge pages \
                 within five minutes, open an incident channel, and post a status update every \
                 thirty minutes until the incident is resolved. Runbooks live next to the \
                 service code; every alert links to its runbook. After the incident a blameless \
                 review is written within two working days, with a timeline, the contributing \
                 factors and follow-up actions that each have an owner and a due date. Reviews \
                 are read aloud at the weekly operations meeting and filed in the archive."
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

async fn an_upload_failing_midway_leaves_no_vectors_in_pinecone(backend: Backend) {
    let pinecone = FakePinecone::start(PINECONE_KEY, BUILTIN_DIMENSION).await;
    let app = pinecone_app(backend, &pinecone, &[]).await;
    let t = app.fresh_tenant("midway").await;
    let key = &t.api_key;
    let ns = t.tenant_id.clone();
    let before = pinecone.ids(&ns);
    let samples: BTreeSet<String> = SAMPLE_IDS.iter().map(|s| s.to_string()).collect();

    // Over a thousand chunks: more than one upsert request (1000 vectors each at most). The first one
    // is written, then Pinecone goes down for good.
    pinecone.clear_requests();
    pinecone.fail_after(1, 503);
    let resp = app
        .try_upload(key, "Operations handbook", &handbook(1100))
        .await;
    assert_error(resp, 503, "vector_store_unavailable").await;
    pinecone.fail_always(None);
    let statuses: Vec<u16> = pinecone
        .requests_to("/vectors/upsert")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200, 503, 503, 503]);

    // The document is not listed, so none of its vectors may stay behind in Pinecone (removed
    // at once or by a later cleanup), and no query may find it.
    assert_eq!(listed(&app, key).await, samples);
    eventually(
        "the vectors of the failed upload to be removed from Pinecone",
        10,
        || async {
            let left = pinecone
                .ids(&ns)
                .into_iter()
                .filter(|id| !before.contains(id))
                .count();
            (left == 0).then_some(())
        },
    )
    .await;
    let body = app
        .query_ok(key, "how fast do on-call engineers acknowledge pages", 5)
        .await;
    for id in result_ids(&body) {
        assert!(
            samples.contains(&id),
            "a hit on a document that does not exist: {id}: {body}"
        );
    }
}

// ---------------------------------------------------------------------------------- embeddings

/// Short documents dense in their topic's words: 16 dimensions tell few words apart.
const TOPICS: [(&str, &str); 3] = [
    (
        "Sourdough bread",
        "Sourdough bread starts with a sourdough starter: feed the starter, mix the sourdough, bake the bread.",
    ),
    (
        "Kubernetes autoscaling",
        "Kubernetes autoscaling adds pods: the Kubernetes autoscaler scales pods and nodes when load grows.",
    ),
    (
        "Quarterly taxes",
        "Quarterly taxes are estimated taxes: pay the estimated taxes every quarter and keep tax receipts.",
    ),
];

/// A query about each topic, and the topic it is about.
const TOPIC_QUERIES: [(&str, usize); 3] = [
    ("how do I bake sourdough bread", 0),
    ("kubernetes autoscaler adds pods", 1),
    ("when are estimated quarterly taxes due", 2),
];

fn assert_embeddings_request(r: &Recorded) {
    assert_eq!(r.method, "POST", "{r:?}");
    assert_eq!(r.path, "/v1/embeddings", "{r:?}");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {EMBEDDINGS_KEY}").as_str()),
        "{r:?}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert_eq!(r.body["model"], EMBEDDINGS_MODEL, "{r:?}");
}

async fn a_configured_embeddings_api_embeds_documents_and_queries(backend: Backend) {
    let embeddings = FakeEmbeddings::start(Some(EMBEDDINGS_KEY), 16).await;
    let app = embeddings_app(backend, &embeddings).await;
    let t = app.fresh_tenant("embeddings").await;
    let key = &t.api_key;
    let ns = t.tenant_id.clone();

    // Provisioning embedded the sample documents through the API, with the model and key.
    let requests = embeddings.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_embeddings_request(r);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.response["model"], EMBEDDINGS_MODEL);
        for item in r.response["data"].as_array().unwrap() {
            assert_eq!(item["embedding"].as_array().unwrap().len(), 16);
        }
    }
    let inputs = embeddings.inputs();
    for sample in onboard::workspace::sample_data::documents() {
        assert!(
            inputs
                .iter()
                .any(|i| i.starts_with(&sample.title) && i.contains(&sample.content)),
            "{} not embedded: {inputs:?}",
            sample.title
        );
    }
    // The namespace and every stored vector have the API's 16 dimensions.
    assert_eq!(namespace_dimension(&app, &ns).await, 16);
    let stored = our_embeddings(&app, &ns).await;
    assert_eq!(stored.len(), inputs.len());
    assert!(stored.iter().all(|e| e.len() == 16 * 4));

    // Each upload is embedded by one call with its title and text.
    let mut ids = Vec::new();
    for (title, content) in TOPICS {
        embeddings.clear_requests();
        let doc = app.upload(key, title, content).await;
        ids.push(doc["id"].as_str().unwrap().to_string());
        let requests = embeddings.requests();
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_embeddings_request(&requests[0]);
        assert_eq!(embeddings.inputs(), [format!("{title}\n\n{content}")]);
    }
    assert_eq!(
        our_vector_rows(&app, Some(&ns)).await as usize,
        stored.len() + TOPICS.len()
    );

    // Each query is embedded by one call; the document about it ranks first, with the score the
    // API's vectors give.
    for (q, want) in TOPIC_QUERIES {
        embeddings.clear_requests();
        let body = app.query_ok(key, q, 3).await;
        let requests = embeddings.requests();
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_embeddings_request(&requests[0]);
        assert_eq!(requests[0].body["input"], json!([q]));
        let query_vector = &requests[0].response["data"][0]["embedding"];
        assert_eq!(query_vector.as_array().unwrap().len(), 16);

        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0]["document_id"], ids[want].as_str(), "{q}: {body}");
        assert_eq!(results[0]["title"], TOPICS[want].0);
        let (title, content) = TOPICS[want];
        let expected = cosine(
            &fake_embedding(q, 16),
            &fake_embedding(&format!("{title}\n\n{content}"), 16),
        );
        let got = results[0]["score"].as_f64().unwrap();
        assert!((got - expected).abs() < 1e-4, "{q}: {got} vs {expected}");
        let scores: Vec<f64> = results
            .iter()
            .map(|r| r["score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    }
}

async fn embeddings_failures_are_clear_errors(backend: Backend) {
    let embeddings = FakeEmbeddings::start(Some(EMBEDDINGS_KEY), 16).await;
    let app = embeddings_app(backend, &embeddings).await;
    let t = app.fresh_tenant("embed-fail").await;
    let key = &t.api_key;
    let ns = t.tenant_id.clone();
    let tid = TenantId::parse(&ns).unwrap();
    let samples: BTreeSet<String> = SAMPLE_IDS.iter().map(|s| s.to_string()).collect();
    assert_eq!(listed(&app, key).await, samples);
    let vectors_before = our_vector_rows(&app, Some(&ns)).await;
    let (title, content) = TOPICS[1];

    // The API fails with 500s: retried, then 503, and nothing is stored.
    embeddings.clear_requests();
    embeddings.fail_always(Some(EmbeddingsFailure::ServerError));
    let err = assert_error(
        app.try_upload(key, title, content).await,
        503,
        "embedder_unavailable",
    )
    .await;
    assert_no_provider_words(&err);
    let requests = embeddings.requests();
    assert_eq!(requests.len(), 3, "three attempts: {requests:?}");
    assert!(requests.iter().all(|r| r.status == 500));
    assert_eq!(listed(&app, key).await, samples);
    assert_eq!(app.store.count_documents(&tid).await.unwrap(), 0);
    assert_eq!(our_vector_rows(&app, Some(&ns)).await, vectors_before);
    let resp = app.query(key, "pod autoscaler", 3).await;
    assert_error(resp, 503, "embedder_unavailable").await;

    // A revoked key: 401 with OpenAI's body, not retried, is a 502 carrying its message.
    embeddings.clear_requests();
    embeddings.fail_always(Some(EmbeddingsFailure::Unauthorized));
    let err = assert_error(
        app.try_upload(key, title, content).await,
        502,
        "embedder_error",
    )
    .await;
    assert_no_provider_words(&err);
    assert_eq!(embeddings.requests().len(), 1, "a 401 is not retried");
    let resp = app.query(key, "pod autoscaler", 3).await;
    let err = assert_error(resp, 502, "embedder_error").await;
    assert!(
        !err["message"]
            .as_str()
            .unwrap()
            .contains(OPENAI_INVALID_KEY_MESSAGE),
        "{err}"
    );
    assert_eq!(listed(&app, key).await, samples);
    assert_eq!(our_vector_rows(&app, Some(&ns)).await, vectors_before);

    // Vectors of the wrong length are refused as the provider's fault.
    embeddings.fail_always(None);
    embeddings.set_dimension(8);
    let err = assert_error(
        app.try_upload(key, title, content).await,
        502,
        "embedder_error",
    )
    .await;
    assert_no_provider_words(&err);
    assert_eq!(app.store.count_documents(&tid).await.unwrap(), 0);

    // None of the failed queries counted as the first query.
    let names = milestone_names(&app, &tid).await;
    assert!(
        !names.iter().any(|m| m == "first_query_executed"),
        "{names:?}"
    );

    // A rate limit that clears is retried through; then everything works and is recorded.
    embeddings.set_dimension(16);
    embeddings.clear_requests();
    embeddings.fail_next(&[EmbeddingsFailure::RateLimited]);
    let doc = app.upload(key, title, content).await;
    let statuses: Vec<u16> = embeddings.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200]);
    let body = app.query_ok(key, TOPIC_QUERIES[1].0, 3).await;
    assert_eq!(result_ids(&body)[0], doc["id"].as_str().unwrap());
    let names = milestone_names(&app, &tid).await;
    assert_eq!(names, ["first_document_upload", "first_query_executed"]);
}

/// A provider's own words (status codes, messages, dimensions) go to the logs, never into an
/// answer to the tenant.
fn assert_no_provider_words(err: &Value) {
    let message = err["message"].as_str().unwrap();
    for word in [
        "401",
        "500",
        "503",
        "Invalid API Key",
        OPENAI_INVALID_KEY_MESSAGE,
        "dimensions",
        "http",
    ] {
        assert!(
            !message.contains(word),
            "the answer repeats the provider ({word}): {message}"
        );
    }
}

/// The internal reason of a tenant's status, as operators see it.
async fn internal_reason(app: &TestApp, tenant_id: &str) -> String {
    app.store
        .tenant(&onboard::domain::TenantId::parse(tenant_id).unwrap())
        .await
        .unwrap()
        .unwrap()
        .status_reason
        .unwrap_or_default()
}
