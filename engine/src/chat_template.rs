//! Hugging Face chat templates rendered with minijinja, set up the way
//! `transformers` sets up Jinja2 for `apply_chat_template`: `trim_blocks` and
//! `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`, a
//! Python-style `tojson`, and Python string/dict methods (`.strip()`,
//! `.startswith()`, `.split()`, `.items()`, ...).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::format::{Item, StrftimeItems};
use chrono::NaiveDateTime;
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};

use crate::chat::{ChatMessage, SystemRole};

const TEMPLATE_NAME: &str = "chat_template";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChatTemplateError {
    #[error("the chat template does not parse: {detail}")]
    Syntax { detail: String },
    #[error("the chat template raised an exception: {message}")]
    Raised { message: String },
    #[error(
        "the chat template rejects the system role ({message}); set system_role = \"fold\" in \
         the job's [model] section to merge the system message into the first user turn"
    )]
    SystemRoleRejected { message: String },
    #[error("rendering the chat template failed: {detail}")]
    Render { detail: String },
}

/// The message a template passed to `raise_exception`, carried as the
/// source of the minijinja error so it can be told apart from other errors.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// A compiled chat template with the model's special-token strings.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`; syntax errors are reported here, not at the first
    /// render. `bos_token`/`eos_token` are the strings templates see (empty
    /// when the model has none). `strftime_now` reads the local clock.
    pub fn new(
        source: &str,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<ChatTemplate, ChatTemplateError> {
        ChatTemplate::build(source, bos_token, eos_token, None)
    }

    /// As [`ChatTemplate::new`], with `strftime_now` fixed to `now`: prompts
    /// that include the date stay identical across days (and so do their
    /// cache keys).
    pub fn with_fixed_now(
        source: &str,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
        now: NaiveDateTime,
    ) -> Result<ChatTemplate, ChatTemplateError> {
        ChatTemplate::build(source, bos_token, eos_token, Some(now))
    }

    fn build(
        source: &str,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
        now: Option<NaiveDateTime>,
    ) -> Result<ChatTemplate, ChatTemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg.clone()).with_source(Raised(msg)))
        });
        let now = Arc::new(now);
        env.add_function("strftime_now", move |fmt: String| strftime_now(&fmt, *now));
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| ChatTemplateError::Syntax {
                detail: describe(&e),
            })?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            bos_token: bos_token.unwrap_or_default().to_string(),
            eos_token: eos_token.unwrap_or_default().to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages` into the prompt text. With [`SystemRole::Fold`]
    /// the leading system messages are merged into the first user turn
    /// first. With [`SystemRole::Keep`], a template that raises on the
    /// system role gives [`ChatTemplateError::SystemRoleRejected`], which
    /// says to fold.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        system_role: SystemRole,
    ) -> Result<String, ChatTemplateError> {
        self.render_with(
            messages,
            add_generation_prompt,
            system_role,
            &BTreeMap::new(),
        )
    }

    /// As [`ChatTemplate::render`], with extra template variables (e.g.
    /// `tools`, `date_string`, `enable_thinking`).
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        system_role: SystemRole,
        extra: &BTreeMap<String, serde_json::Value>,
    ) -> Result<String, ChatTemplateError> {
        match system_role {
            SystemRole::Fold => {
                self.render_raw(&fold_system(messages), add_generation_prompt, extra)
            }
            SystemRole::Keep => match self.render_raw(messages, add_generation_prompt, extra) {
                Err(ChatTemplateError::Raised { message })
                    if messages.iter().any(|m| m.role == "system")
                        && self
                            .render_raw(&fold_system(messages), add_generation_prompt, extra)
                            .is_ok() =>
                {
                    Err(ChatTemplateError::SystemRoleRejected { message })
                }
                other => other,
            },
        }
    }

    fn render_raw(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &BTreeMap<String, serde_json::Value>,
    ) -> Result<String, ChatTemplateError> {
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| ChatTemplateError::Render {
                detail: describe(&e),
            })?;
        let mut ctx: BTreeMap<String, Value> = extra
            .iter()
            .map(|(k, v)| (k.clone(), Value::from_serialize(v)))
            .collect();
        ctx.insert("messages".into(), Value::from_serialize(messages));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        ctx.insert("bos_token".into(), Value::from(self.bos_token.clone()));
        ctx.insert("eos_token".into(), Value::from(self.eos_token.clone()));
        tmpl.render(ctx).map_err(|e| match raised_message(&e) {
            Some(message) => ChatTemplateError::Raised { message },
            None => ChatTemplateError::Render {
                detail: describe(&e),
            },
        })
    }
}

/// Merges the leading system messages (joined by a blank line) into the
/// first user turn, or makes them a user turn when none follows: the same
/// rule as the planner's `system_role = "fold"`.
pub fn fold_system(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    let leading = messages.iter().take_while(|m| m.role == "system").count();
    if leading == 0 {
        return messages.to_vec();
    }
    let system = messages[..leading]
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n\n");
    let mut out = messages[leading..].to_vec();
    match out.first_mut() {
        Some(first) if first.role == "user" => {
            first.content = format!("{system}\n\n{}", first.content);
        }
        _ => out.insert(
            0,
            ChatMessage {
                role: "user".to_string(),
                content: system,
            },
        ),
    }
    out
}

fn raised_message(e: &Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Raised>() {
            return Some(r.0.clone());
        }
        cur = err.source();
    }
    None
}

/// The error with its location, for messages.
fn describe(e: &Error) -> String {
    match e.line() {
        Some(line) => format!("{e} (template line {line})"),
        None => e.to_string(),
    }
}

fn strftime_now(fmt: &str, fixed: Option<NaiveDateTime>) -> Result<String, Error> {
    let items: Vec<Item<'_>> = StrftimeItems::new(fmt).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format {fmt:?}"),
        ));
    }
    let now = fixed.unwrap_or_else(|| chrono::Local::now().naive_local());
    let mut out = String::new();
    write!(out, "{}", now.format_with_items(items.into_iter())).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: format {fmt:?} needs a time zone"),
        )
    })?;
    Ok(out)
}

/// `tojson` as transformers defines it: Python's `json.dumps` with
/// `ensure_ascii=False` (so `", "`/`": "` separators, no HTML escaping) and
/// the `indent`, `sort_keys` and `separators` keyword arguments.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match (v.as_usize(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(n)),
            (None, Some(s)) => Some(s.to_string()),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ))
            }
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] => match (a.as_str(), b.as_str()) {
                    (Some(a), Some(b)) => (a.to_string(), b.to_string()),
                    _ => return Err(bad_separators()),
                },
                _ => return Err(bad_separators()),
            }
        }
        // Python's defaults: ", " without indent, "," with it.
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let json = serde_json::to_value(&value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    let fmt = PyJson {
        indent: indent.as_deref(),
        item_sep: &item_sep,
        key_sep: &key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    fmt.write(&json, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn bad_separators() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        "tojson: separators must be a pair of strings",
    )
}

struct PyJson<'a> {
    indent: Option<&'a str>,
    item_sep: &'a str,
    key_sep: &'a str,
    sort_keys: bool,
}

impl PyJson<'_> {
    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(ind) = self.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(ind);
            }
        }
    }

    fn write(&self, v: &serde_json::Value, depth: usize, out: &mut String) {
        use serde_json::Value as J;
        match v {
            J::Array(items) if !items.is_empty() => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push(']');
            }
            J::Object(map) if !map.is_empty() => {
                let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    out.push_str(&J::String(k.clone()).to_string());
                    out.push_str(self.key_sep);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push('}');
            }
            // Scalars, `[]` and `{}`: serde_json's escaping matches
            // Python's with ensure_ascii=False.
            other => out.push_str(&other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    /// SmolLM2-135M-Instruct's template, as stored in its GGUF metadata.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// Gemma's template (abridged to its logic): no system role allowed.
    const GEMMA: &str = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";

    /// A Llama 3.2-style template: strftime_now, loop controls, block
    /// whitespace control, string methods, tojson.
    const LLAMA3: &str = r#"{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'].strip() %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if message.content.startswith('SKIP') %}
        {%- continue %}
    {%- endif %}
    {%- if message.role == 'stop' %}
        {%- break %}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"#;

    fn fixed_now() -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2024, 11, 22)
            .unwrap()
            .and_hms_opt(9, 30, 0)
            .unwrap()
    }

    #[test]
    fn smollm2_chatml() {
        let t = ChatTemplate::new(SMOLLM2, None, Some("<|im_end|>")).unwrap();
        let out = t
            .render(&[msg("user", "What is 2+2?")], true, SystemRole::Keep)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = t
            .render(
                &[
                    msg("system", "Be brief."),
                    msg("user", "Hi"),
                    msg("assistant", "Hello!"),
                ],
                false,
                SystemRole::Keep,
            )
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nHello!<|im_end|>\n"
        );
    }

    #[test]
    fn gemma_rejects_system_and_fold_works() {
        let t = ChatTemplate::new(GEMMA, Some("<bos>"), Some("<eos>")).unwrap();
        let msgs = [msg("system", "Be brief."), msg("user", "Hi  ")];
        let e = t.render(&msgs, true, SystemRole::Keep).unwrap_err();
        assert_eq!(
            e,
            ChatTemplateError::SystemRoleRejected {
                message: "System role not supported".into()
            }
        );
        assert!(e.to_string().contains("system_role = \"fold\""), "{e}");
        let out = t.render(&msgs, true, SystemRole::Fold).unwrap();
        assert_eq!(
            out,
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
        );
        // A raise that folding does not cure is reported as it is.
        let e = t
            .render(&[msg("assistant", "x")], false, SystemRole::Keep)
            .unwrap_err();
        assert!(
            matches!(&e, ChatTemplateError::Raised { message } if message.contains("alternate")),
            "{e:?}"
        );
    }

    #[test]
    fn llama3_style_with_strftime_and_loop_controls() {
        let t = ChatTemplate::with_fixed_now(LLAMA3, Some("<|begin_of_text|>"), None, fixed_now())
            .unwrap();
        let msgs = [
            msg("system", "  You are terse.  "),
            msg("user", "Hello"),
            msg("user", "SKIP this one"),
            msg("assistant", "Hi there "),
            msg("stop", "never shown"),
            msg("user", "never shown"),
        ];
        let out = t.render(&msgs, true, SystemRole::Keep).unwrap();
        assert_eq!(
            out,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
             Today Date: 22 Nov 2024\n\nYou are terse.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        // An explicit date_string wins over strftime_now.
        let mut extra = BTreeMap::new();
        extra.insert("date_string".to_string(), serde_json::json!("01 Jan 2000"));
        let out = t
            .render_with(&msgs[1..2], false, SystemRole::Keep, &extra)
            .unwrap();
        assert!(out.contains("Today Date: 01 Jan 2000"), "{out}");
        // The live clock renders too.
        let live = ChatTemplate::new(LLAMA3, None, None).unwrap();
        let out = live.render(&msgs[1..2], false, SystemRole::Keep).unwrap();
        let today = chrono::Local::now().format("%d %b %Y").to_string();
        assert!(out.contains(&today), "{out}");
    }

    #[test]
    fn trim_and_lstrip_blocks_like_transformers() {
        let src = "{% for m in messages %}\n    {% if m.role == 'user' %}\nU:{{ m.content }}\n    {% endif %}\n{% endfor %}";
        let t = ChatTemplate::new(src, None, None).unwrap();
        let out = t
            .render(
                &[msg("user", "a"), msg("assistant", "b"), msg("user", "c")],
                false,
                SystemRole::Keep,
            )
            .unwrap();
        assert_eq!(out, "U:a\nU:c\n");
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let src = "{{ tools | tojson }}|{{ tools | tojson(indent=2) }}|{{ x | tojson(sort_keys=true, separators=[',', ':']) }}";
        let t = ChatTemplate::new(src, None, None).unwrap();
        let mut extra = BTreeMap::new();
        extra.insert(
            "tools".to_string(),
            serde_json::json!([{"name": "get_weather", "args": {"city": "Zürich <x> & \"y\"", "n": 1.5}, "e": []}]),
        );
        extra.insert(
            "x".to_string(),
            serde_json::json!({"b": 1, "a": [true, null]}),
        );
        let out = t.render_with(&[], false, SystemRole::Keep, &extra).unwrap();
        let parts: Vec<&str> = out.split('|').collect();
        assert_eq!(
            parts[0],
            r#"[{"name": "get_weather", "args": {"city": "Zürich <x> & \"y\"", "n": 1.5}, "e": []}]"#
        );
        assert_eq!(
            parts[1],
            "[\n  {\n    \"name\": \"get_weather\",\n    \"args\": {\n      \"city\": \"Zürich <x> & \\\"y\\\"\",\n      \"n\": 1.5\n    },\n    \"e\": []\n  }\n]"
        );
        assert_eq!(parts[2], r#"{"a":[true,null],"b":1}"#);
    }

    #[test]
    fn python_string_methods() {
        let src = "{{ s.strip() }}|{{ s.split(',') | length }}|{{ s.lstrip().startswith('a') }}|{{ s.upper() | trim }}|{{ s.replace('b', 'B') | trim }}|{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{{ d.get('zz', 'dflt') }}";
        let t = ChatTemplate::new(src, None, None).unwrap();
        let mut extra = BTreeMap::new();
        extra.insert("s".to_string(), serde_json::json!("  a,b,c  "));
        extra.insert("d".to_string(), serde_json::json!({"k1": 1, "k2": "v"}));
        let out = t.render_with(&[], false, SystemRole::Keep, &extra).unwrap();
        // Booleans print as Python prints them, as in Jinja2.
        assert_eq!(out, "a,b,c|3|True|A,B,C|a,B,c|k1=1;k2=v;|dflt");
    }

    #[test]
    fn errors_are_typed() {
        let e = ChatTemplate::new("{% for x in %}", None, None).unwrap_err();
        assert!(matches!(e, ChatTemplateError::Syntax { .. }), "{e:?}");
        let t = ChatTemplate::new("{{ strftime_now('%Q') }}", None, None).unwrap();
        let e = t.render(&[], false, SystemRole::Keep).unwrap_err();
        assert!(
            matches!(&e, ChatTemplateError::Render { detail } if detail.contains("%Q")),
            "{e:?}"
        );
        let t = ChatTemplate::new("{{ raise_exception('boom') }}", None, None).unwrap();
        assert_eq!(
            t.render(&[msg("system", "s")], false, SystemRole::Keep)
                .unwrap_err(),
            ChatTemplateError::Raised {
                message: "boom".into()
            }
        );
    }

    #[test]
    fn fold_rules() {
        let f = fold_system(&[msg("system", "A"), msg("system", "B"), msg("user", "C")]);
        assert_eq!(f, vec![msg("user", "A\n\nB\n\nC")]);
        let f = fold_system(&[msg("system", "A"), msg("assistant", "C")]);
        assert_eq!(f, vec![msg("user", "A"), msg("assistant", "C")]);
        let f = fold_system(&[msg("user", "C")]);
        assert_eq!(f, vec![msg("user", "C")]);
    }

    #[test]
    fn smollm2_template_from_gguf() {
        let Some(path) = crate::gguf::tests::smollm2_path() else {
            return;
        };
        let (tok, src) = crate::gguf::load_gguf_tokenizer(&path).unwrap();
        let src = src.unwrap();
        assert_eq!(src, SMOLLM2);
        let t = ChatTemplate::new(
            &src,
            tok.token(tok.bos_token_id),
            tok.token(tok.eos_token_id),
        )
        .unwrap();
        let out = t
            .render(&[msg("user", "Hi")], true, SystemRole::Keep)
            .unwrap();
        assert!(
            out.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
            "{out}"
        );
    }
}
