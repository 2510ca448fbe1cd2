//! Every relative link in the README and in `docs/` names a file or folder
//! of the repository, and no link leaves it (the project documents itself).

use std::path::{Path, PathBuf};

/// The `](target)` links of a markdown text, without their `#fragment`.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split('#').next().unwrap_or("");
        if !target.is_empty() {
            out.push(target.to_string());
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn relative_links_in_the_docs_name_files_of_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut pages: Vec<PathBuf> = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for target in links(&text) {
            let external = target.contains("://") || target.starts_with("mailto:");
            let exists = page.parent().unwrap().join(&target).exists();
            if external || !exists {
                broken.push(format!("{}: {target}", page.display()));
            }
        }
    }
    assert!(pages.len() > 1, "no pages under docs/");
    assert!(
        broken.is_empty(),
        "broken or outside links:\n{}",
        broken.join("\n")
    );
}
