//! kiln's token ids equal Hugging Face's Python `tokenizers` for the same
//! tokenizer.json (fixture: scripts/fixtures/make_tokenizer_fixture.py).

use std::path::{Path, PathBuf};

use kiln_text::load_tokenizer;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    type_ids: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    tokenizer_sha256: String,
    cases: std::collections::BTreeMap<usize, Vec<Case>>,
}

#[test]
fn token_ids_match_hugging_face() {
    let model_dir = repo().join("models/pretrained/all-MiniLM-L6-v2");
    assert!(model_dir.join("tokenizer.json").exists(), "{} is missing: run `make setup`", model_dir.display());
    let text = std::fs::read_to_string(repo().join("tests/fixtures/tokenizer_minilm.json")).expect("fixture");
    let fixture: Fixture = serde_json::from_str(&text).expect("fixture parses");
    let sha = kiln_core::output::sha256_file(&model_dir.join("tokenizer.json")).expect("hash");
    assert_eq!(sha, fixture.tokenizer_sha256, "the fixture was made from another tokenizer.json");

    let mut checked = 0;
    for (max_length, cases) in &fixture.cases {
        let tokenizer = load_tokenizer(&model_dir, *max_length).expect("tokenizer loads");
        let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
        let encodings = tokenizer.encode_batch_fast(texts, true).expect("encodes");
        for (case, encoding) in cases.iter().zip(&encodings) {
            assert_eq!(encoding.get_ids(), case.ids, "ids of {:?} at max_length {max_length}", case.text);
            assert_eq!(encoding.get_type_ids(), case.type_ids, "type ids of {:?}", case.text);
            assert!(case.ids.len() <= *max_length);
            checked += 1;
        }
    }
    assert!(checked >= 20, "the fixture should hold real cases, found {checked}");
}
