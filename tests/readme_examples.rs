//! The documentation leads with code that is compiled and run elsewhere: keep the copies identical.

fn code_blocks(markdown: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = markdown;
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("\n```").expect("closed code block");
        out.push(body[..end].to_string());
        rest = &body[end..];
    }
    out
}

#[test]
fn docs_rotary_leads_with_the_custom_model_example() {
    let root = env!("CARGO_MANIFEST_DIR");
    let doc = std::fs::read_to_string(format!("{root}/docs/rotary.md")).expect("docs/rotary.md");
    let example = std::fs::read_to_string(format!("{root}/dype-burn/examples/custom_model.rs"))
        .expect("custom_model.rs");
    let blocks = code_blocks(&doc, "rust");
    assert_eq!(
        blocks.first().map(String::as_str),
        Some(example.trim_end()),
        "the first Rust block of docs/rotary.md must be dype-burn/examples/custom_model.rs"
    );
}
