//! Judge requests: what their keys cover, how templates see a document,
//! and the spec checks of a judge metric.

use serde_json::Value;

use super::*;
use crate::request::RenderedInput;
use crate::spec::JobSpec;
use crate::RequestKey;

fn spec(metric: &str) -> Result<JobSpec, crate::SpecError> {
    let text = format!(
        r#"
name = "judged"
[model]
backend = "openai"
model = "m"
base_url = "http://127.0.0.1:9/v1"
[dataset]
path = "d.jsonl"
[task]
kind = "generate"
prompt = "{{{{ q }}}}"
target = "{{{{ a }}}}"
[[metrics]]
type = "exact_match"
{metric}
"#
    );
    JobSpec::from_toml_str(&text, "job.toml", None)
}

const JUDGE: &str = r#"
[[metrics]]
type = "judge"
name = "correct"
template = "Q: {{ q }}\nAnswer: {{ output }}\nReference: {{ target }}"
labels = ["CORRECT", "INCORRECT"]
[metrics.model]
backend = "openai"
model = "judge"
base_url = "http://127.0.0.1:9/v1"
[metrics.generation]
max_tokens = 8
n = 2
temperature = 0.5
"#;

fn item() -> JudgeItem {
    let Value::Object(fields) = serde_json::json!({"q": "2+2?", "a": "4"}) else {
        unreachable!()
    };
    JudgeItem {
        doc_index: 3,
        doc_id: "d3".into(),
        row: "d.jsonl:4".into(),
        fields,
        prompt: "2+2?".into(),
        target: Some("4".into()),
        choices: None,
        keys: vec![RequestKey("a".repeat(64))],
    }
}

fn keys(judges: &Judges, outputs: &[&str]) -> Vec<RequestKey> {
    let outputs: Vec<String> = outputs.iter().map(|s| s.to_string()).collect();
    judges
        .requests(&item(), &outputs)
        .unwrap()
        .into_iter()
        .map(|r| r.request.key)
        .collect()
}

#[test]
fn requests_render_the_output_and_sample_per_verdict() {
    let judges = Judges::new(&spec(JUDGE).unwrap()).unwrap();
    assert_eq!(judges.names(), vec!["correct".to_string()]);
    let made = judges
        .requests(&item(), &["4".to_string(), "5".to_string()])
        .unwrap();
    assert_eq!(made.len(), 4, "two outputs, two verdicts each");
    let RenderedInput::Messages { messages } = &made[3].request.input else {
        panic!("a chat judge gets messages")
    };
    assert_eq!(messages[0].content, "Q: 2+2?\nAnswer: 5\nReference: 4");
    assert_eq!((made[3].output, made[3].request.sample_index), (1, 1));
    assert_eq!(made[0].request.doc_index, 3);
}

#[test]
fn keys_follow_the_template_and_the_output_but_not_the_extraction() {
    let base = keys(&Judges::new(&spec(JUDGE).unwrap()).unwrap(), &["4"]);
    assert_ne!(
        base,
        keys(&Judges::new(&spec(JUDGE).unwrap()).unwrap(), &["5"]),
        "the graded output is part of the key"
    );
    let other_template = JUDGE.replace("Reference:", "Gold:");
    assert_ne!(
        base,
        keys(
            &Judges::new(&spec(&other_template).unwrap()).unwrap(),
            &["4"]
        )
    );
    let other_model = JUDGE.replace("model = \"judge\"", "model = \"judge-2\"");
    assert_ne!(
        base,
        keys(&Judges::new(&spec(&other_model).unwrap()).unwrap(), &["4"])
    );
    let other_grading = JUDGE.replace(
        "labels = [\"CORRECT\", \"INCORRECT\"]",
        "labels = [\"CORRECT\", \"INCORRECT\"]\npattern = \"VERDICT: (\\\\w+)\"",
    );
    assert_eq!(
        base,
        keys(
            &Judges::new(&spec(&other_grading).unwrap()).unwrap(),
            &["4"]
        ),
        "a new extraction reuses every verdict"
    );
}

#[test]
fn a_template_naming_a_missing_field_fails_the_check() {
    let judges = Judges::new(&spec(&JUDGE.replace("{{ q }}", "{{ question }}")).unwrap()).unwrap();
    let err = judges.check(&item()).unwrap_err();
    assert_eq!(err.template, "metrics[1].template");
    assert_eq!(err.row, "d.jsonl:4");
}

#[test]
fn scores_average_the_graded_verdicts() {
    let judges = Judges::new(&spec(JUDGE).unwrap()).unwrap();
    let grades: Vec<Grade> = ["CORRECT", "INCORRECT", "no idea"]
        .iter()
        .filter_map(|v| judges.grade(0, v))
        .collect();
    assert_eq!(grades.len(), 2, "a verdict without a label has no grade");
    assert_eq!(judges.score(0, &grades), Some(0.5));
    assert_eq!(judges.score(0, &[]), None);
}

#[test]
fn spec_checks_name_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("name = \"correct\"\n", "", "metrics[1].name"),
        ("Q: {{ q }}", "Q: {{ q", "metrics[1].template"),
        (
            "labels = [\"CORRECT\", \"INCORRECT\"]",
            "range = [5, 1]",
            "metrics[1].range",
        ),
        (
            "labels = [\"CORRECT\", \"INCORRECT\"]",
            "labels = [\"A\", \"a\"]",
            "metrics[1].labels[1]",
        ),
        (
            "labels = [\"CORRECT\", \"INCORRECT\"]",
            "labels = [\"A\", \"B\"]\naggregate = \"mean\"",
            "metrics[1].label_scores",
        ),
        (
            "base_url = \"http://127.0.0.1:9/v1\"\n[metrics.generation]",
            "[metrics.generation]",
            "metrics[1].model.base_url",
        ),
        (
            "temperature = 0.5",
            "temperature = 5.0",
            "metrics[1].generation.temperature",
        ),
        (
            "backend = \"openai\"\nmodel = \"judge\"",
            "backend = \"none\"\nmodel = \"judge\"",
            "metrics[1].model.backend",
        ),
    ];
    for (from, to, field) in cases {
        let text = JUDGE.replacen(from, to, 1);
        assert_ne!(text, JUDGE, "case {from:?} changed nothing");
        let err = spec(&text).unwrap_err().to_string();
        assert!(err.contains(field), "{from:?} → {to:?}: {err}");
    }
    let err = spec("[[metrics]]\ntype = \"f1\"\nlabels = [\"A\"]")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("metrics[1].labels") && err.contains("judge"),
        "{err}"
    );
}

#[test]
fn a_judge_item_round_trips_as_json() {
    let json = serde_json::to_string(&item()).unwrap();
    let back: JudgeItem = serde_json::from_str(&json).unwrap();
    assert_eq!(back, item());
}

#[test]
fn trimming_keeps_what_the_templates_read_and_their_requests() {
    let judges = Judges::new(&spec(JUDGE).unwrap()).unwrap();
    let mut item = item();
    item.fields
        .insert("passage".into(), Value::String("x".repeat(10_000)));
    let before = judges.requests(&item, &["4".to_string()]).unwrap();
    judges.trim(&mut item);
    assert_eq!(item.fields.keys().collect::<Vec<_>>(), vec!["q"]);
    assert!(
        item.prompt.is_empty(),
        "the template does not read the prompt"
    );
    assert_eq!(judges.requests(&item, &["4".to_string()]).unwrap(), before);

    let whole_row = JUDGE.replace("{{ q }}", "{{ doc.q }}");
    let judges = Judges::new(&spec(&whole_row).unwrap()).unwrap();
    let mut item = self::item();
    judges.trim(&mut item);
    assert_eq!(
        item.fields.len(),
        2,
        "a template reading `doc` keeps the row"
    );
}

#[test]
fn a_stored_item_renders_the_keys_of_the_document_it_came_from() {
    // Floats must come back from the stored JSON as the very same numbers,
    // or a judge request made from the stored item and the one rescoring
    // makes from the dataset would differ.
    let judges = Judges::new(&spec(&JUDGE.replace("{{ q }}", "{{ q }} {{ x }}")).unwrap()).unwrap();
    for text in [
        "0.1",
        "2.2250738585072011e-308",
        "1.0000000000000002",
        "8.98846567431158e307",
    ] {
        let mut item = item();
        let x: Value = serde_json::from_str(text).unwrap();
        item.fields.insert("x".into(), x);
        let stored: JudgeItem =
            serde_json::from_str(&serde_json::to_string(&item).unwrap()).unwrap();
        assert_eq!(
            judges.requests(&stored, &["4".to_string()]).unwrap(),
            judges.requests(&item, &["4".to_string()]).unwrap(),
            "{text}"
        );
    }
}

#[test]
fn a_judge_on_a_base_model_gets_its_prompt_format() {
    let base = JUDGE
        .replace(
            "base_url = \"http://127.0.0.1:9/v1\"\n[metrics.generation]",
            "base_url = \"http://127.0.0.1:9/v1\"\nendpoint = \"completions\"\n[metrics.model.prompt_format]\nuser = { pre = \"### Grade:\\n\", post = \"\\n### Verdict:\" }\n[metrics.generation]",
        );
    assert_ne!(base, JUDGE);
    let judges = Judges::new(&spec(&base).unwrap()).unwrap();
    let made = judges.requests(&item(), &["4".to_string()]).unwrap();
    assert_eq!(
        made[0].request.input,
        RenderedInput::Prompt {
            prompt: "### Grade:\nQ: 2+2?\nAnswer: 4\nReference: 4\n### Verdict:".into()
        }
    );
    let chat = base.replace("endpoint = \"completions\"\n", "");
    let err = spec(&chat).unwrap_err().to_string();
    assert!(err.contains("metrics[1].model.prompt_format"), "{err}");
}
