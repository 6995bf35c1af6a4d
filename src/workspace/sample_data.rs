//! Sample documents shipped in the binary (the seed's `example_data.json` shape).

use serde::Deserialize;

/// One sample document.
#[derive(Debug, Clone, Deserialize)]
pub struct SampleDocument {
    pub id: String,
    pub title: String,
    pub content: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

const SAMPLE_JSON: &str = include_str!("../../data/sample_documents.json");

/// The documents every new workspace starts with (parsed once).
pub fn documents() -> &'static [SampleDocument] {
    static DOCUMENTS: std::sync::LazyLock<Vec<SampleDocument>> = std::sync::LazyLock::new(|| {
        serde_json::from_str(SAMPLE_JSON).expect("the shipped sample documents parse")
    });
    &DOCUMENTS
}

/// The vectors of every sample document, as provisioning writes them.
pub async fn vector_records(
    embedder: &crate::search::Embedder,
) -> Result<Vec<crate::search::VectorRecord>, crate::search::EmbedError> {
    let mut records = Vec::new();
    for d in documents() {
        let id = super::documents::sample_document_id(d);
        records
            .extend(super::documents::vectorize(embedder, &id, &d.title, &d.content, true).await?);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ships_the_three_seed_documents() {
        let docs = super::documents();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].id, "doc_1");
        assert!(docs.iter().all(|d| !d.content.is_empty()));
    }
}
