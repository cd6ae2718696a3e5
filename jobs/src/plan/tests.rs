//! Planning specs end to end: requests, keys, few-shot, gold answers and
//! errors.

use super::*;
use crate::dataset::Doc;
use crate::dataset::{DatasetReader, ReadPolicy};
use crate::request::{RenderedInput, RequestType};
use std::io::Write;
use std::path::Path;

fn doc(index: u64, json: &str) -> Doc {
    let Value::Object(fields) = serde_json::from_str(json).unwrap() else {
        panic!("not an object")
    };
    Doc {
        index,
        path: std::sync::Arc::from(Path::new("data.jsonl")),
        line: index + 1,
        id: format!("d{index}"),
        subset: None,
        fields,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    spec: JobSpec,
}

/// A spec over a temp folder holding `shots.jsonl`.
fn fixture(toml_text: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("shots.jsonl")).unwrap();
    writeln!(
        f,
        r#"{{"q": "2+2?", "a": "4", "options": ["3", "4"], "gold": 1}}"#
    )
    .unwrap();
    writeln!(
        f,
        r#"{{"q": "Capital of Italy?", "a": "Rome", "options": ["Rome", "Oslo"], "gold": 0}}"#
    )
    .unwrap();
    writeln!(
        f,
        r#"{{"q": "unused", "a": "x", "options": ["x"], "gold": 0}}"#
    )
    .unwrap();
    let spec = JobSpec::from_toml_str(toml_text, "job.toml", Some(dir.path())).unwrap();
    Fixture { _dir: dir, spec }
}

const CHAT: &str = r#"
name = "t"
[model]
backend = "none"
model = "m"
[dataset]
path = "data.jsonl"
[task]
kind = "generate"
target = "{{ a }}"
[[task.messages]]
role = "system"
content = "Be brief."
[[task.messages]]
role = "user"
content = "Q: {{ q }}"
[task.fewshot]
path = "shots.jsonl"
k = 2
[[metrics]]
type = "exact_match"
"#;

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: content.into(),
    }
}

fn messages(req: &InferenceRequest) -> Vec<ChatMessage> {
    match &req.input {
        RenderedInput::Messages { messages } => messages.clone(),
        other => panic!("expected messages, got {other:?}"),
    }
}

#[test]
fn messages_mode_with_fewshot() {
    let fx = fixture(CHAT);
    let planner = Planner::new(&fx.spec, &ReadPolicy::unrestricted()).unwrap();
    let plan = planner
        .plan_doc(&doc(0, r#"{"q": "Capital of France?", "a": "Paris"}"#))
        .unwrap();
    assert_eq!(plan.requests.len(), 1);
    assert_eq!(plan.target.as_deref(), Some("Paris"));
    assert_eq!(
        messages(&plan.requests[0]),
        vec![
            msg("system", "Be brief."),
            msg("user", "Q: 2+2?"),
            msg("assistant", "4"),
            msg("user", "Q: Capital of Italy?"),
            msg("assistant", "Rome"),
            msg("user", "Q: Capital of France?"),
        ]
    );
    assert!(plan
        .prompt_display()
        .starts_with("[system] Be brief.\n[user] Q: 2+2?"));
    let r = &plan.requests[0];
    assert_eq!(
        (r.request_type, r.sample_index, r.doc_index),
        (RequestType::Generate, 0, 0)
    );
}

/// `[model.prompt_format]` turns the conversation, few-shot turns
/// included, into one prompt when the request is planned, so the key
/// hashes that text.
#[test]
fn prompt_format_makes_one_prompt_that_the_key_sees() {
    let d = doc(0, r#"{"q": "Capital of France?", "a": "Paris"}"#);
    let engine = format!(
        "backend = \"engine\"\npath = \"m.gguf\"\nfingerprint = \"{}\"",
        "0".repeat(64)
    );
    let plan = |format: &str| {
        let spec = format!("{CHAT}{format}").replace("backend = \"none\"", &engine);
        let fx = fixture(&spec);
        let planner = Planner::new(&fx.spec, &ReadPolicy::unrestricted()).unwrap();
        planner.plan_doc(&d).unwrap()
    };
    let prompt = |p: &DocPlan| match &p.requests[0].input {
        RenderedInput::Prompt { prompt } => prompt.clone(),
        other => panic!("expected a prompt, got {other:?}"),
    };
    let joined = plan("[model.prompt_format]\n");
    assert_eq!(
        prompt(&joined),
        "Be brief. Q: 2+2? 4 Q: Capital of Italy? Rome Q: Capital of France?"
    );
    assert_eq!(joined.prompt_display(), prompt(&joined));
    let roles = plan(
        "[model.prompt_format]\nbos = \"<s>\"\neos = \"</s>\"\nfinal = \"A:\"\n\
         system = { pre = \"[SYS]\", post = \"\\n\" }\n\
         user = { pre = \"[INST] \", post = \" [/INST]\\n\" }\n\
         assistant = { post = \"\\n\" }\n",
    );
    assert_eq!(
        prompt(&roles),
        "<s>[SYS]Be brief.\n[INST] Q: 2+2? [/INST]\n4\n</s><s>[INST] Q: Capital of Italy? \
         [/INST]\nRome\n</s><s>[INST] Q: Capital of France? [/INST]\nA:"
    );
    assert_ne!(joined.requests[0].key, roles.requests[0].key);
}

#[test]
fn fold_merges_system_into_first_user_turn() {
    let fx = fixture(&CHAT.replace("model = \"m\"", "model = \"m\"\nsystem_role = \"fold\""));
    let planner = Planner::new(&fx.spec, &ReadPolicy::unrestricted()).unwrap();
    let plan = planner
        .plan_doc(&doc(0, r#"{"q": "x", "a": "y"}"#))
        .unwrap();
    let m = messages(&plan.requests[0]);
    assert_eq!(m.len(), 5);
    assert_eq!(m[0], msg("user", "Be brief.\n\nQ: 2+2?"));
    assert!(m.iter().all(|m| m.role != "system"));
    assert_eq!(m[4], msg("user", "Q: x"));
}

/// A chat spec with `system_role = "fold"` and the given turns.
fn fold_spec(turns: &[(&str, &str)]) -> String {
    let mut text = String::from(
        "name = \"t\"\n[model]\nbackend = \"none\"\nmodel = \"m\"\nsystem_role = \"fold\"\n\
         [dataset]\npath = \"data.jsonl\"\n[task]\nkind = \"generate\"\n",
    );
    for (role, content) in turns {
        text.push_str(&format!(
            "[[task.messages]]\nrole = \"{role}\"\ncontent = \"{content}\"\n"
        ));
    }
    text
}

#[test]
fn fold_merges_a_later_system_turn_into_the_next_user_turn() {
    let fx = fixture(&fold_spec(&[
        ("user", "Q: {{ q }}"),
        ("assistant", "Thinking."),
        ("system", "Answer in French."),
        ("system", "Be brief."),
        ("user", "Go on."),
    ]));
    let planner = Planner::new(&fx.spec, &ReadPolicy::unrestricted()).unwrap();
    let plan = planner.plan_doc(&doc(0, r#"{"q": "x"}"#)).unwrap();
    assert_eq!(
        messages(&plan.requests[0]),
        vec![
            msg("user", "Q: x"),
            msg("assistant", "Thinking."),
            msg("user", "Answer in French.\n\nBe brief.\n\nGo on."),
        ]
    );
}

#[test]
fn fold_refuses_a_system_turn_with_no_user_turn_after_it() {
    let err = JobSpec::from_toml_str(
        &fold_spec(&[
            ("system", "Be brief."),
            ("user", "Q: {{ q }}"),
            ("system", "Then stop."),
        ]),
        "job.toml",
        None,
    )
    .unwrap_err();
    assert_eq!(err.field(), Some("task.messages[2]"));
    let text = err.to_string();
    assert!(text.contains("job.toml"), "{text}");
    assert!(text.contains("no user turn after it"), "{text}");
    assert!(text.contains("system_role"), "{text}");

    // The same spec keeping system turns is fine.
    let keep = fold_spec(&[("user", "Q: {{ q }}"), ("system", "Then stop.")])
        .replace("system_role = \"fold\"", "system_role = \"keep\"");
    assert!(JobSpec::from_toml_str(&keep, "job.toml", None).is_ok());
}

#[test]
fn fold_system_turns_names_the_stranded_turn() {
    let folded = doc::fold_system_turns(vec![
        msg("system", "a"),
        msg("user", "b"),
        msg("assistant", "c"),
        msg("system", "d"),
        msg("user", "e"),
    ])
    .unwrap();
    assert_eq!(
        folded,
        vec![
            msg("user", "a\n\nb"),
            msg("assistant", "c"),
            msg("user", "d\n\ne")
        ]
    );
    let stranded = doc::fold_system_turns(vec![
        msg("user", "b"),
        msg("assistant", "c"),
        msg("system", "d"),
        msg("system", "e"),
    ]);
    assert_eq!(stranded, Err(2));
    assert_eq!(
        doc::fold_system_turns(vec![msg("user", "only")]),
        Ok(vec![msg("user", "only")])
    );
}

const PROMPT_MODE: &str = r#"
name = "t"
[model]
backend = "none"
model = "m"
endpoint = "completions"
[dataset]
path = "data.jsonl"
[task]
kind = "generate"
prompt = "Q: {{ q }}\nA:"
target = "{{ a }}"
fewshot_separator = "\n\n"
[task.fewshot]
path = "shots.jsonl"
k = 2
[task.generation]
n = 3
temperature = 0.7
seed = 5
"#;

#[test]
fn prompt_mode_fewshot_and_samples() {
    let fx = fixture(PROMPT_MODE);
    let planner = Planner::new(&fx.spec, &ReadPolicy::unrestricted()).unwrap();
    let plan = planner
        .plan_doc(&doc(4, r#"{"q": "Sky colour?", "a": "blue"}"#))
        .unwrap();
    let want = "Q: 2+2?\nA: 4\n\nQ: Capital of Italy?\nA: Rome\n\nQ: Sky colour?\nA:";
    assert_eq!(plan.prompt_display(), want);
    assert_eq!(plan.requests.len(), 3);
    for (i, r) in plan.requests.iter().enumerate() {
        assert_eq!(
            r.input,
            RenderedInput::Prompt {
                prompt: want.to_string()
            }
        );
        assert_eq!(r.sample_index, i as u32);
        assert_eq!(r.doc_index, 4);
        assert_eq!(r.params.temperature, 0.7);
        assert_eq!(r.params.seed, Some(5));
    }
    let keys: std::collections::HashSet<_> = plan.requests.iter().map(|r| &r.key).collect();
    assert_eq!(keys.len(), 3);

    // The chat endpoint sends the same text as one user message.
    let fx = fixture(&PROMPT_MODE.replace("endpoint = \"completions\"", "endpoint = \"chat\""));
    let plan2 = Planner::new(&fx.spec, &ReadPolicy::unrestricted())
        .unwrap()
        .plan_doc(&doc(4, r#"{"q": "Sky colour?", "a": "blue"}"#))
        .unwrap();
    assert_eq!(messages(&plan2.requests[0]), vec![msg("user", want)]);
}

#[test]
fn keys_are_stable_and_change_with_params() {
    let d = doc(0, r#"{"q": "a", "a": "b"}"#);
    let fx = fixture(PROMPT_MODE);
    let a = Planner::new(&fx.spec, &ReadPolicy::unrestricted())
        .unwrap()
        .plan_doc(&d)
        .unwrap();
    let b = Planner::new(&fx.spec, &ReadPolicy::unrestricted())
        .unwrap()
        .plan_doc(&d)
        .unwrap();
    assert_eq!(a.requests, b.requests);
    // The doc's position does not change its key (cache reuse across datasets).
    let moved = Planner::new(&fx.spec, &ReadPolicy::unrestricted())
        .unwrap()
        .plan_doc(&doc(9, r#"{"q": "a", "a": "b"}"#))
        .unwrap();
    assert_eq!(a.requests[0].key, moved.requests[0].key);
    let fx2 = fixture(&PROMPT_MODE.replace("temperature = 0.7", "temperature = 0.8"));
    let c = Planner::new(&fx2.spec, &ReadPolicy::unrestricted())
        .unwrap()
        .plan_doc(&d)
        .unwrap();
    assert_ne!(a.requests[0].key, c.requests[0].key);
    let fx3 = fixture(&PROMPT_MODE.replace("model = \"m\"", "model = \"m2\""));
    let e = Planner::new(&fx3.spec, &ReadPolicy::unrestricted())
        .unwrap()
        .plan_doc(&d)
        .unwrap();
    assert_ne!(a.requests[0].key, e.requests[0].key);
}

const MC: &str = r#"
name = "mc"
[model]
backend = "none"
model = "m"
endpoint = "completions"
[dataset]
path = "data.jsonl"
[task]
kind = "multiple_choice"
prompt = "{% for c in choices %}{{ letters[loop.index0] }}. {{ c }}\n{% endfor %}Q: {{ q }}\nA:"
choices = "options"
target = "{{ gold }}"
[[metrics]]
type = "acc"
[[metrics]]
type = "acc_norm"
"#;

#[test]
fn multiple_choice_requests_and_gold() {
    let fx = fixture(MC);
    let planner = Planner::new(&fx.spec, &ReadPolicy::unrestricted()).unwrap();
    let plan = planner
        .plan_doc(&doc(
            0,
            r#"{"q": "Capital?", "options": ["Paris", "Rome"], "gold": "B"}"#,
        ))
        .unwrap();
    assert_eq!(plan.prompt_display(), "A. Paris\nB. Rome\nQ: Capital?\nA:");
    assert_eq!(
        plan.choices,
        Some(vec!["Paris".to_string(), "Rome".to_string()])
    );
    assert_eq!(plan.gold_index, Some(1));
    assert_eq!(plan.requests.len(), 2);
    assert_eq!(plan.requests[0].request_type, RequestType::Loglikelihood);
    assert_eq!(plan.requests[0].continuation.as_deref(), Some(" Paris"));
    assert_eq!(plan.requests[1].continuation.as_deref(), Some(" Rome"));
    assert_ne!(plan.requests[0].key, plan.requests[1].key);
    for (gold, want) in [("0", 0), ("Rome", 1), ("a", 0)] {
        let d = doc(
            0,
            &format!(r#"{{"q": "x", "options": ["Paris", "Rome"], "gold": "{gold}"}}"#),
        );
        assert_eq!(
            planner.plan_doc(&d).unwrap().gold_index,
            Some(want),
            "{gold}"
        );
    }
    let d = doc(
        2,
        r#"{"q": "x", "options": ["Paris", "Rome"], "gold": "Berlin"}"#,
    );
    let e = planner.plan_doc(&d).unwrap_err();
    assert_eq!(e.template, "task.target");
    assert!(e.row.ends_with("data.jsonl:3"), "{e}");
    assert!(e.to_string().contains("\"Berlin\""), "{e}");
    let d = doc(0, r#"{"q": "x", "options": "Paris", "gold": 0}"#);
    let e = planner.plan_doc(&d).unwrap_err();
    assert_eq!(e.template, "task.choices");

    // Few-shot in prompt mode appends the gold choice text.
    let fx = fixture(&MC.replace(
        "[[metrics]]\ntype = \"acc\"",
        "[task.fewshot]\npath = \"shots.jsonl\"\nk = 1\n[[metrics]]\ntype = \"acc\"",
    ));
    let plan = Planner::new(&fx.spec, &ReadPolicy::unrestricted())
        .unwrap()
        .plan_doc(&doc(
            0,
            r#"{"q": "Capital?", "options": ["Paris", "Rome"], "gold": 0}"#,
        ))
        .unwrap();
    assert!(
        plan.prompt_display()
            .starts_with("A. 3\nB. 4\nQ: 2+2?\nA: 4\n\nA. Paris"),
        "{}",
        plan.prompt_display()
    );
}

#[test]
fn missing_field_names_template_row_and_field() {
    let fx = fixture(CHAT);
    let planner = Planner::new(&fx.spec, &ReadPolicy::unrestricted()).unwrap();
    let e = planner
        .plan_doc(&doc(6, r#"{"question": "x", "a": "y"}"#))
        .unwrap_err();
    assert_eq!(e.template, "task.messages[1].content");
    assert_eq!(e.doc_id, "d6");
    let text = e.to_string();
    assert!(
        text.contains("data.jsonl:7: template `task.messages[1].content`"),
        "{text}"
    );
    assert!(text.contains("undefined"), "{text}");
    assert!(
        text.contains("not in this row: q (the row has: question, a)"),
        "{text}"
    );
}

#[test]
fn missing_fewshot_file_is_a_spec_error() {
    let fx = fixture(&CHAT.replace("shots.jsonl", "nope.jsonl"));
    let e = Planner::new(&fx.spec, &ReadPolicy::unrestricted())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("`task.fewshot.path`") && e.contains("nope.jsonl"),
        "{e}"
    );
    let fx = fixture(&CHAT.replace("k = 2", "k = 9"));
    let e = Planner::new(&fx.spec, &ReadPolicy::unrestricted())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("asks for 9 examples"), "{e}");
}

#[test]
fn example_jobs_plan_every_doc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for (name, docs, per_doc) in [("quickstart", 60, 1), ("mmlu-style", 30, 4)] {
        let spec = JobSpec::from_toml_file(&root.join(name).join("job.toml")).unwrap();
        let planner = Planner::new(&spec, &ReadPolicy::unrestricted()).unwrap();
        let reader = DatasetReader::open(&spec.dataset, &ReadPolicy::unrestricted()).unwrap();
        let mut count = 0;
        let mut ids = std::collections::HashSet::new();
        for d in reader {
            let d = d.unwrap();
            let plan = planner
                .plan_doc(&d)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(plan.requests.len(), per_doc, "{name} {}", d.id);
            assert!(plan.subset.is_some());
            assert!(ids.insert(d.id.clone()), "duplicate id {}", d.id);
            if spec.task.kind == TaskKind::MultipleChoice {
                assert!(plan.gold_index.is_some());
            } else {
                assert_eq!(messages(&plan.requests[0]).len(), 6);
            }
            count += 1;
        }
        assert_eq!(count, docs, "{name}");
    }
}
