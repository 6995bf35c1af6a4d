//! The layout rules of ARCHITECTURE.md, read off the source as text: every dependency points from
//! the edges (http, cli, tasks, job handlers) down to the core (search, jobs, store, domain).
//! A file breaks a rule when it names a forbidden top-level module through `crate::…` (in a
//! `use` line or inline) or through a `super::` path that climbs out of its own module.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules of the crate that are the store's, not modules of their own: the query
/// macros are exported at the crate root.
const STORE_MACROS: [&str; 3] = ["with_conn", "with_pool", "with_reader"];

/// A layout rule: files under `folder` may name only `allowed` top-level modules (besides their
/// own), or must not name `forbidden` ones.
struct Rule {
    folder: &'static str,
    allowed: Option<&'static [&'static str]>,
    forbidden: &'static [&'static str],
    why: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        folder: "jobs",
        allowed: None,
        forbidden: &[
            "app",
            "http",
            "tasks",
            "provisioning",
            "billing",
            "email",
            "workspace",
            "search",
            "analytics",
            "audit",
        ],
        why: "the job engine knows job kinds only as data; handlers live with their work",
    },
    Rule {
        folder: "search",
        allowed: None,
        forbidden: &[
            "app",
            "http",
            "tasks",
            "workspace",
            "jobs",
            "provisioning",
            "billing",
            "email",
            "analytics",
            "audit",
            "config",
        ],
        why: "search is below every feature; its callers build its clients",
    },
    Rule {
        folder: "audit",
        allowed: None,
        forbidden: &[
            "http",
            "cli",
            "demo",
            "tasks",
            "billing",
            "provisioning",
            "email",
            "workspace",
            "analytics",
            "search",
        ],
        why: "the audit log is recorded from every layer; its retention knows only the store",
    },
    Rule {
        folder: "domain",
        allowed: Some(&[]),
        forbidden: &[],
        why: "the domain is pure: std and external crates only",
    },
    Rule {
        folder: "alerts",
        allowed: Some(&["store"]),
        forbidden: &[],
        why: "alerts read durable records through the store, so every process answers the same",
    },
    Rule {
        folder: "store",
        allowed: Some(&["domain"]),
        forbidden: &[],
        why: "the store persists domain types and knows nothing above them",
    },
];

/// `src/<module>/…` → the module path of a file (`src/jobs/mod.rs` → `["jobs"]`,
/// `src/jobs/worker.rs` → `["jobs", "worker"]`).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// The source without comments and string literals (so prose and messages never count).
fn code_only(source: &str) -> String {
    let bytes: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < bytes.len() && bytes[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < bytes.len() && !(bytes[i] == '*' && bytes[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && matches!(next, Some('"') | Some('#')) && raw_string_at(&bytes, i) {
            i = skip_raw_string(&bytes, i);
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                if bytes[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && is_char_literal(&bytes, i) {
            i += 1;
            while i < bytes.len() && bytes[i] != '\'' {
                if bytes[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn raw_string_at(b: &[char], i: usize) -> bool {
    let before_ok = i == 0 || !(b[i - 1].is_alphanumeric() || b[i - 1] == '_');
    let mut j = i + 1;
    while j < b.len() && b[j] == '#' {
        j += 1;
    }
    before_ok && b.get(j) == Some(&'"')
}

fn skip_raw_string(b: &[char], i: usize) -> usize {
    let mut j = i + 1;
    let mut hashes = 0;
    while b[j] == '#' {
        hashes += 1;
        j += 1;
    }
    j += 1;
    while j < b.len() {
        if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
            return j + 1 + hashes;
        }
        j += 1;
    }
    j
}

/// A `'` that opens a char literal (`'a'`, `'\n'`), not a lifetime (`'a`).
fn is_char_literal(b: &[char], i: usize) -> bool {
    matches!(
        (b.get(i + 1), b.get(i + 2)),
        (Some('\\'), _) | (Some(_), Some('\''))
    )
}

/// The top-level modules a file names: `crate::x`, `crate::{x, y::z}`, and `super::…` paths
/// that climb to the crate root (counting inline `mod name { … }` blocks as a level each).
fn named_modules(module: &[String], source: &str) -> BTreeSet<String> {
    let code = code_only(source);
    let inline = inline_module_depths(&code);
    let mut found = BTreeSet::new();
    let mut offset = 0;
    while let Some((climb, after)) = find_path_start(&code[offset..]) {
        let at = offset + after;
        // `crate::` is the root; each `super::` climbs one module from where the path stands.
        let here = module.len() + inline[at.min(inline.len() - 1)];
        let depth_left = match climb {
            Climb::Crate => Some(0),
            Climb::Super(n) if n <= here => Some(here - n),
            Climb::Super(_) => None,
        };
        if let Some(depth) = depth_left {
            for first in first_segments(&code[at..]) {
                match module.first() {
                    Some(own) if depth > 0 => found.insert(own.clone()),
                    _ => found.insert(first),
                };
            }
        }
        offset = at;
    }
    found
}

/// For each byte of `code`, how many inline `mod name {` blocks enclose it.
fn inline_module_depths(code: &str) -> Vec<usize> {
    let mut depths = vec![0; code.len() + 1];
    // Brace depth at which each open inline module started.
    let mut open: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut pending_mod = false;
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if code[i..].starts_with("mod ")
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'))
        {
            pending_mod = true;
        }
        match bytes[i] {
            b'{' => {
                braces += 1;
                if pending_mod {
                    open.push(braces);
                    pending_mod = false;
                }
            }
            b'}' => {
                if open.last() == Some(&braces) {
                    open.pop();
                }
                braces = braces.saturating_sub(1);
            }
            b';' => pending_mod = false,
            _ => {}
        }
        depths[i] = open.len();
        i += 1;
    }
    depths[code.len()] = open.len();
    depths
}

enum Climb {
    Crate,
    Super(usize),
}

/// The next `crate::` or run of `super::`, with where the path after it starts.
fn find_path_start(s: &str) -> Option<(Climb, usize)> {
    let c = find_word(s, "crate::");
    let u = find_word(s, "super::");
    match (c, u) {
        (Some(c), Some(u)) if c < u => Some((Climb::Crate, c + "crate::".len())),
        (Some(c), None) => Some((Climb::Crate, c + "crate::".len())),
        (_, Some(u)) => {
            let mut end = u;
            let mut n = 0;
            while s[end..].starts_with("super::") {
                end += "super::".len();
                n += 1;
            }
            Some((Climb::Super(n), end))
        }
        (None, None) => None,
    }
}

/// `word` where it is not the tail of a longer identifier (`$crate::` counts as `crate::`).
fn find_word(s: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find(word) {
        let at = from + i;
        let prev = s[..at].chars().next_back();
        if !prev.is_some_and(|p| p.is_alphanumeric() || p == '_') {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// The first path segment(s) after `crate::`: one identifier, or each item of a `{…}` group.
fn first_segments(tail: &str) -> Vec<String> {
    let tail = tail.trim_start();
    if let Some(group) = tail.strip_prefix('{') {
        let mut depth = 0;
        let mut items = Vec::new();
        let mut current = String::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                current.push(c);
            }
        }
        items.push(current);
        items
            .iter()
            .filter_map(|item| ident(item.trim()))
            .filter(|i| i != "self")
            .collect()
    } else {
        ident(tail).into_iter().collect()
    }
}

fn ident(s: &str) -> Option<String> {
    let id: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!id.is_empty()).then_some(id)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every broken rule in the files under `src`, one line each.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let module = module_path(src, &file);
        let Some(top) = module.first() else { continue };
        let Some(rule) = RULES.iter().find(|r| r.folder == top) else {
            continue;
        };
        let source = std::fs::read_to_string(&file).expect("readable source file");
        for named in named_modules(&module, &source) {
            let named = if STORE_MACROS.contains(&named.as_str()) {
                "store".to_string()
            } else {
                named
            };
            if named == *top {
                continue;
            }
            let broken = match rule.allowed {
                Some(allowed) => !allowed.contains(&named.as_str()),
                None => rule.forbidden.contains(&named.as_str()),
            };
            if broken {
                found.push(format!(
                    "{} imports `{named}`: {}",
                    file.strip_prefix(src.parent().unwrap_or(src))
                        .unwrap_or(&file)
                        .display(),
                    rule.why
                ));
            }
        }
    }
    found
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "layout rules broken (see ARCHITECTURE.md):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_sees_every_way_of_naming_a_module() {
    let module = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let names = |m: &[&str], src: &str| named_modules(&module(m), src);
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

    assert_eq!(names(&["jobs"], "use crate::app::AppState;"), set(&["app"]));
    assert_eq!(
        names(
            &["jobs", "worker"],
            "use crate::{store::Store, http, metrics::{A, B}};"
        ),
        set(&["store", "http", "metrics"])
    );
    assert_eq!(
        names(&["jobs"], "let x = crate::provisioning::run(app).await;"),
        set(&["provisioning"])
    );
    // `super::` from a submodule stays inside; from a folder's mod.rs it reaches the root.
    assert_eq!(
        names(&["jobs", "worker"], "use super::Job;"),
        set(&["jobs"])
    );
    assert_eq!(
        names(&["jobs"], "use super::email::Mailer;"),
        set(&["email"])
    );
    assert_eq!(
        names(&["search", "pinecone"], "use super::super::workspace::X;"),
        set(&["workspace"])
    );
    // Comments, doc comments and strings do not count; `$crate::` in a macro does.
    assert!(
        names(
            &["jobs"],
            "//! built by `crate::tasks`\n/* crate::app */ let s = \"crate::http\";"
        )
        .is_empty()
    );
    assert_eq!(
        names(&["store"], "$crate::store::Store::Sqlite(p) => p,"),
        set(&["store"])
    );
    // Inside an inline `mod tests`, `super::` is the file's own module.
    assert_eq!(
        names(
            &["store"],
            "fn a() {}\nmod tests { use super::values_rows; }"
        ),
        set(&["store"])
    );
    assert_eq!(
        names(&["store"], "mod tests { use super::super::http::X; }"),
        set(&["http"])
    );
    // Lifetimes are not char literals.
    assert_eq!(
        names(&["jobs"], "fn f<'a>(x: &'a str) { crate::http::g() }"),
        set(&["http"])
    );
}

#[test]
fn a_forbidden_import_is_reported_with_its_rule() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("jobs")).unwrap();
    std::fs::create_dir_all(src.join("domain")).unwrap();
    std::fs::create_dir_all(src.join("store")).unwrap();
    std::fs::write(
        src.join("jobs/worker.rs"),
        "use crate::provisioning::ProvisionJob;\nuse crate::store::Store;\n",
    )
    .unwrap();
    std::fs::write(src.join("domain/mod.rs"), "use crate::config::Settings;\n").unwrap();
    std::fs::write(
        src.join("store/mod.rs"),
        "use crate::domain::TenantId;\nuse crate::{with_conn, with_pool};\nuse crate::http::X;\n",
    )
    .unwrap();
    let found = violations(&src);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].contains("domain/mod.rs imports `config`"),
        "{}",
        found[0]
    );
    assert!(
        found[1].contains("jobs/worker.rs imports `provisioning`"),
        "{}",
        found[1]
    );
    assert!(
        found[2].contains("store/mod.rs imports `http`"),
        "{}",
        found[2]
    );
}
