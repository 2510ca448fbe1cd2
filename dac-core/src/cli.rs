//! What the workspace's programs share on their command lines (feature
//! `cli`).

/// A clap error as one line, without the `error: ` prefix and the usage:
/// the message, then what it lists (`a, b`) and its tips (`; tip: …`), then
/// `(see --help)`.
pub fn one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let mut line = String::new();
    for paragraph in rendered.split("\n\n") {
        let paragraph = paragraph.trim();
        if paragraph.starts_with("Usage:") || paragraph.starts_with("For more information") {
            continue;
        }
        for part in paragraph.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line.is_empty() {
                line.push_str(part.strip_prefix("error: ").unwrap_or(part));
                continue;
            }
            let separator = if line.ends_with(':') || part.starts_with('[') {
                " "
            } else if part.starts_with("tip:") {
                "; "
            } else {
                ", "
            };
            line.push_str(separator);
            line.push_str(part);
        }
    }
    format!("{line} (see --help)")
}
