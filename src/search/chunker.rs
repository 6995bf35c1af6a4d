//! Splits a document into chunks for embedding: paragraphs packed up to about
//! [`TARGET_CHARS`] characters, a paragraph longer than that cut at sentence and then word
//! boundaries, and each chunk after the first starting with the last ~[`OVERLAP_CHARS`]
//! characters of the one before (at a word boundary), so a passage cut in two is still found.
//! Lengths are counted in characters, never bytes, so no UTF-8 sequence is ever split.

/// Aimed-for chunk length in characters (the overlap comes on top).
pub const TARGET_CHARS: usize = 800;
/// Characters of the previous chunk repeated at the start of the next.
pub const OVERLAP_CHARS: usize = 120;

/// The chunks of `text`, in order. Empty or whitespace-only text has no chunks.
pub fn chunk(text: &str) -> Vec<String> {
    let text = text.replace("\r\n", "\n");
    // Each piece remembers whether it starts a paragraph: pieces of one cut paragraph are
    // joined again with a space, paragraphs with a blank line.
    let mut pieces: Vec<(String, bool)> = Vec::new();
    for paragraph in paragraphs(&text) {
        if chars(paragraph) <= TARGET_CHARS {
            pieces.push((paragraph.to_string(), true));
        } else {
            let mut cut = Vec::new();
            split_long(paragraph, &mut cut);
            pieces.extend(cut.into_iter().enumerate().map(|(i, p)| (p, i == 0)));
        }
    }

    let mut chunks: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut current_has_new = false;
    for (piece, starts_paragraph) in pieces {
        let joined = chars(&current) + 2 + chars(&piece);
        if current_has_new && joined > TARGET_CHARS {
            let overlap = tail(&current, OVERLAP_CHARS).to_string();
            chunks.push(std::mem::take(&mut current));
            current = overlap;
        }
        if !current.is_empty() {
            current.push_str(if starts_paragraph { "\n\n" } else { " " });
        }
        current.push_str(&piece);
        current_has_new = true;
    }
    if current_has_new {
        chunks.push(current);
    }
    chunks
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Paragraphs: runs of text separated by blank lines, trimmed, never empty.
fn paragraphs(text: &str) -> impl Iterator<Item = &str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    let mut blank_run = false;
    for line in text.split_inclusive('\n') {
        let is_blank = line.trim().is_empty();
        if is_blank && !blank_run {
            out.push(&text[start..offset]);
        }
        if !is_blank && blank_run {
            start = offset;
        }
        blank_run = is_blank;
        offset += line.len();
    }
    if !blank_run {
        out.push(&text[start..]);
    }
    out.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

/// Cuts a long paragraph into pieces of at most [`TARGET_CHARS`]: after sentence ends where
/// possible, else between words, else (one enormous word) anywhere.
fn split_long(paragraph: &str, out: &mut Vec<String>) {
    let mut rest = paragraph.trim();
    // A character at index TARGET_CHARS exists exactly when `rest` is too long; finding it
    // looks at no more than the window (counting all of `rest` each time was quadratic).
    while let Some((limit, _)) = rest.char_indices().nth(TARGET_CHARS) {
        let window = &rest[..limit];
        let sentence_end = window
            .rmatch_indices(['.', '!', '?', '\n'])
            .map(|(i, m)| i + m.len())
            .find(|&i| i > limit / 2);
        let cut = sentence_end
            .or_else(|| window.rfind(char::is_whitespace).filter(|&i| i > 0))
            .unwrap_or(limit);
        let (head, tail) = rest.split_at(cut);
        let head = head.trim();
        if !head.is_empty() {
            out.push(head.to_string());
        }
        rest = tail.trim_start();
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
}

/// The last `n` characters of `s` or fewer, starting at a word boundary when there is one.
fn tail(s: &str, n: usize) -> &str {
    let total = chars(s);
    if total <= n {
        return s;
    }
    let start = s.char_indices().nth(total - n).map_or(0, |(i, _)| i);
    let window = &s[start..];
    match window.find(char::is_whitespace) {
        Some(i) if i + 1 < window.len() => window[i..].trim_start(),
        _ => window,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize, tag: &str) -> String {
        (0..n)
            .map(|i| format!("{tag}{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn empty_text_has_no_chunks() {
        assert!(chunk("").is_empty());
        assert!(chunk(" \n\n \r\n ").is_empty());
    }

    #[test]
    fn a_short_document_is_one_chunk() {
        assert_eq!(
            chunk("Hello world.\n\nSecond paragraph."),
            vec!["Hello world.\n\nSecond paragraph."]
        );
    }

    #[test]
    fn paragraphs_are_packed_up_to_the_target_with_overlap() {
        let paras: Vec<String> = (0..6).map(|i| words(40, &format!("p{i}w"))).collect();
        let text = paras.join("\n\n");
        let chunks = chunk(&text);
        assert!(chunks.len() >= 2, "{chunks:?}");
        for c in &chunks {
            assert!(chars(c) <= TARGET_CHARS + OVERLAP_CHARS + 2, "{}", chars(c));
        }
        // Every paragraph survives whole in some chunk.
        for p in &paras {
            assert!(chunks.iter().any(|c| c.contains(p.as_str())), "lost {p}");
        }
        // The second chunk starts with words that ended the first.
        let first_word_of_second = chunks[1].split_whitespace().next().unwrap();
        assert!(chunks[0].contains(first_word_of_second));
    }

    #[test]
    fn a_long_paragraph_is_cut_at_sentences_then_words() {
        let sentence = format!("{}.", words(30, "s"));
        let text = [sentence.as_str(); 24].join(" ");
        let chunks = chunk(&text);
        assert!(chunks.len() >= 3);
        for c in &chunks {
            assert!(chars(c) <= TARGET_CHARS + OVERLAP_CHARS + 2);
        }
        assert!(
            chunks[0].ends_with('.'),
            "cut at a sentence end: {}",
            chunks[0]
        );

        let no_sentences = words(400, "w");
        for c in chunk(&no_sentences) {
            assert!(!c.starts_with(char::is_whitespace) && !c.ends_with(char::is_whitespace));
            assert!(
                c.split_whitespace().all(|w| w.starts_with('w')),
                "a word was cut: {c}"
            );
        }
    }

    #[test]
    fn multibyte_text_and_giant_words_never_split_a_character() {
        let text = "é".repeat(3000);
        let chunks = chunk(&text);
        assert!(chunks.len() >= 4);
        let longest = chunks.iter().map(|c| chars(c)).max().unwrap();
        assert!(longest > TARGET_CHARS && longest <= TARGET_CHARS + OVERLAP_CHARS + 2);
        assert!(chunks.concat().chars().filter(|c| *c == 'é').count() >= 3000);
        let mixed = format!("{} 日本語のテキスト。{}", "ü".repeat(900), "ß".repeat(900));
        assert!(!chunk(&mixed).is_empty());
    }

    #[test]
    fn windows_line_endings_separate_paragraphs() {
        let text = format!("{}\r\n\r\n{}", words(150, "a"), words(150, "b"));
        let chunks = chunk(&text);
        assert!(chunks.len() >= 2);
        assert!(chunks.iter().all(|c| !c.contains('\r')));
    }
}
