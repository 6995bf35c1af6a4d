//! The built-in deterministic embedder: no model download, same text → same vector on every
//! machine. Words and word bigrams are hashed into a fixed number of signed buckets (feature
//! hashing) and the vector is L2-normalised, so cosine similarity measures shared vocabulary.

use sha2::{Digest, Sha256};

use super::embeddings::{EmbedError, EmbeddingsClient};

/// The embedder a deployment uses: the built-in one (default), or an OpenAI-compatible
/// `POST {EMBEDDINGS_URL}/embeddings` endpoint when configured.
#[derive(Clone, Debug)]
pub enum Embedder {
    Builtin,
    Remote(EmbeddingsClient),
}

/// Texts embedded on the async threads before moving to a blocking thread (~0.1 ms each).
const INLINE_BATCH: usize = 32;

impl Embedder {
    /// Dimensions of every vector this embedder returns.
    pub fn dimension(&self) -> usize {
        match self {
            Embedder::Builtin => DIMENSION,
            Embedder::Remote(c) => c.dimension().unwrap_or(DIMENSION),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Embedder::Builtin => "builtin",
            Embedder::Remote(_) => "openai-compatible",
        }
    }

    /// One vector per text, in order.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        match self {
            Embedder::Builtin if texts.len() <= INLINE_BATCH => {
                Ok(texts.iter().map(|t| embed(t)).collect())
            }
            Embedder::Builtin => {
                let texts = texts.to_vec();
                tokio::task::spawn_blocking(move || texts.iter().map(|t| embed(t)).collect())
                    .await
                    .map_err(|e| EmbedError::Unavailable(e.to_string()))
            }
            Embedder::Remote(client) => client.embed(texts).await,
        }
    }
}

/// Dimensions of the built-in embedder.
pub const DIMENSION: usize = 384;

/// Embeds text into a unit vector of [`DIMENSION`] floats: words (lower-cased, stop words
/// dropped, plural and verb endings stripped, so "refunds" meets "refund") and word pairs,
/// each counted sub-linearly (1 + ln n), so a word repeated ten times does not drown the rest.
pub fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIMENSION];
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(|w| stem(&w))
        .collect();
    // Ordered, so the float sums happen in the same order on every run and machine.
    let mut counts: std::collections::BTreeMap<String, (f32, f32)> =
        std::collections::BTreeMap::new();
    for w in &words {
        counts.entry(w.clone()).or_insert((0.0, 1.0)).0 += 1.0;
    }
    for pair in words.windows(2) {
        counts
            .entry(format!("{} {}", pair[0], pair[1]))
            .or_insert((0.0, 0.5))
            .0 += 1.0;
    }
    for (feature, (n, weight)) in &counts {
        add(&mut v, feature.as_bytes(), weight * (1.0 + n.ln()));
    }
    normalize(&mut v);
    v
}

/// A light suffix stripper (not a full stemmer): plural and common verb endings.
fn stem(word: &str) -> String {
    let n = word.chars().count();
    for (suffix, min_len, replacement) in [
        ("ies", 5, "y"),
        ("sses", 5, "ss"),
        ("ing", 6, ""),
        ("ed", 5, ""),
        ("es", 5, ""),
        ("s", 4, ""),
    ] {
        if n >= min_len
            && let Some(root) = word.strip_suffix(suffix)
            && !(suffix == "s" && root.ends_with('s'))
        {
            return format!("{root}{replacement}");
        }
    }
    word.to_string()
}

fn add(v: &mut [f32], feature: &[u8], weight: f32) {
    let h = Sha256::digest(feature);
    let bucket = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize % v.len();
    let sign = if h[4] & 1 == 0 { 1.0 } else { -1.0 };
    v[bucket] += sign * weight;
}

fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how",
    "i", "in", "is", "it", "me", "my", "of", "on", "or", "our", "the", "this", "to", "we", "what",
    "when", "will", "with", "you", "your",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Cosine similarity of two vectors of equal length (0 when either is zero).
    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
        for (x, y) in a.iter().zip(b) {
            dot += x * y;
            na += x * x;
            nb += y * y;
        }
        if na == 0.0 || nb == 0.0 {
            0.0
        } else {
            dot / (na.sqrt() * nb.sqrt())
        }
    }

    #[test]
    fn deterministic_and_unit_length() {
        let a = embed("Getting started with the API");
        assert_eq!(a, embed("Getting started with the API"));
        assert_eq!(a.len(), DIMENSION);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }

    #[test]
    fn related_text_scores_higher_than_unrelated() {
        let doc_api =
            embed("Our REST API provides endpoints for tenant management and query execution");
        let doc_cake = embed("Bake the cake at 180 degrees until golden brown");
        let q = embed("which REST endpoints does the API provide");
        assert!(cosine(&q, &doc_api) > cosine(&q, &doc_cake) + 0.2);
    }

    #[test]
    fn word_forms_meet_and_repetition_is_damped() {
        assert_eq!(stem("refunds"), "refund");
        assert_eq!(stem("policies"), "policy");
        assert_eq!(stem("billing"), "bill");
        assert_eq!(stem("class"), "class");
        assert_eq!(stem("bus"), "bus");
        let refund = embed(
            "Refund policy\n\nCustomers may ask for a full refund within 30 days; refunds after that are pro-rated.",
        );
        let guide = embed(
            "Getting Started Guide\n\nWelcome to our platform! This guide will help you get started.",
        );
        let q = embed("can I get a refund after two weeks?");
        assert!(cosine(&q, &refund) > cosine(&q, &guide));
        let spam = embed(&"refund ".repeat(50));
        let mixed = embed("refund policy customers days");
        assert!(
            cosine(&spam, &mixed) < 0.7,
            "ten repeats do not make a document all about one word"
        );
    }

    #[test]
    fn empty_text_is_a_zero_vector() {
        assert!(embed("  ").iter().all(|x| *x == 0.0));
        assert_eq!(cosine(&embed(""), &embed("x")), 0.0);
    }
}
