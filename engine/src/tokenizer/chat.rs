//! Chat templates: the model's `tokenizer.chat_template` rendered with minijinja, configured
//! the way Hugging Face (and llama.cpp) run them: `trim_blocks` and `lstrip_blocks` on, Python
//! string/dict methods (`.strip()`, `.items()`...) through minijinja-contrib's pycompat, plus
//! the globals templates expect: `raise_exception(msg)`, `strftime_now(fmt)` (local time), and
//! llama.cpp's extra `date_string` (`%d %b %Y`) and `datetime` (`%b %d %Y`).
//!
//! Like llama.cpp, messages are adjusted first: role `developer` becomes `system` (unless the
//! template speaks gpt-oss's `<|channel|>`), and when the template drops or rejects a system
//! message, the system text is put in front of the next message (`system + "\n" + next`). llama.cpp
//! decides that from which variables the template reads; we render a probe conversation and
//! look for the system text in the output.

use super::{ChatMessage, TokenizerError};
use minijinja::syntax::SyntaxConfig;
use minijinja::{context, Environment, Error, ErrorKind, Value};

/// What one rendering needs besides the template and messages.
pub(super) struct Inputs<'a> {
    pub(super) add_generation_prompt: bool,
    pub(super) bos_token: &'a str,
    pub(super) eos_token: &'a str,
    /// `strftime_now`'s clock, seconds since the epoch (None: now).
    pub(super) now: Option<i64>,
}

pub(super) fn render(
    template: &str,
    messages: &[ChatMessage],
    inp: &Inputs,
) -> Result<String, TokenizerError> {
    let env = environment(inp.now)?;
    let mut env = env;
    env.add_template("chat", template)
        .map_err(|e| fail("does not parse", e))?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| fail("does not parse", e))?;
    let now = inp.now.unwrap_or_else(unix_now);
    let run = |msgs: &[ChatMessage], add: bool| {
        tmpl.render(context! {
            messages => Value::from_iter(msgs.iter().map(|m| {
                Value::from_pairs([("role", m.role.as_str()), ("content", m.content.as_str())])
            })),
            add_generation_prompt => add,
            bos_token => inp.bos_token,
            eos_token => inp.eos_token,
            date_string => strftime("%d %b %Y", now).unwrap_or_default(),
            datetime => strftime("%b %d %Y", now).unwrap_or_default(),
        })
    };
    let mut msgs = messages.to_vec();
    if !template.contains("<|channel|>") {
        for m in msgs.iter_mut().filter(|m| m.role == "developer") {
            m.role = "system".into();
        }
    }
    if msgs.first().is_some_and(|m| m.role == "system") {
        let probe = [
            ChatMessage {
                role: "system".into(),
                content: "System message".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "User message".into(),
            },
        ];
        let supported = run(&probe, false).is_ok_and(|out| out.contains("System message"));
        if !supported {
            let system = msgs.remove(0);
            if let Some(next) = msgs.first_mut() {
                next.content = format!("{}\n{}", system.content, next.content);
            }
        }
    }
    run(&msgs, inp.add_generation_prompt).map_err(|e| fail("failed", e))
}

fn environment(now: Option<i64>) -> Result<Environment<'static>, TokenizerError> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| fail("syntax", e))?;
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_function(
        "strftime_now",
        move |fmt: String| -> Result<String, Error> {
            strftime(&fmt, now.unwrap_or_else(unix_now))
                .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "strftime_now: bad format"))
        },
    );
    Ok(env)
}

/// One line: what failed, minijinja's reason, and where (`line N`) when known.
fn fail(what: &str, e: Error) -> TokenizerError {
    let detail = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    let at = e
        .line()
        .map(|l| format!(" at line {l}"))
        .unwrap_or_default();
    let detail = detail.replace('\n', " ");
    TokenizerError(format!("chat template {what}{at}: {detail}"))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// C's `strftime` on local time, as llama.cpp's `strftime_now` does.
fn strftime(fmt: &str, t: i64) -> Option<String> {
    let cfmt = std::ffi::CString::new(fmt).ok()?;
    let time = t as libc::time_t;
    // SAFETY: `tm` is plain data that localtime_r fully initialises on success (checked);
    // `time` and `tm` outlive the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&time, &mut tm) }.is_null() {
        return None;
    }
    let mut buf = vec![0u8; 256];
    // SAFETY: `buf` is writable for `buf.len()` bytes, `cfmt` is NUL-terminated and `tm` is
    // initialised; strftime writes at most `buf.len()` bytes and returns how many (0 = no fit).
    let n = unsafe {
        libc::strftime(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            cfmt.as_ptr(),
            &tm,
        )
    };
    if n == 0 && !fmt.is_empty() {
        return None;
    }
    buf.truncate(n);
    String::from_utf8(buf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
        pairs
            .iter()
            .map(|(r, c)| ChatMessage {
                role: r.to_string(),
                content: c.to_string(),
            })
            .collect()
    }

    fn inputs() -> Inputs<'static> {
        Inputs {
            add_generation_prompt: true,
            bos_token: "<s>",
            eos_token: "</s>",
            now: Some(0),
        }
    }

    #[test]
    fn python_methods_and_block_trimming() {
        let t = "{% for m in messages %}\n  {{ m.role.upper() }}: {{ m['content'].strip() }}\n{% endfor %}";
        let out = render(t, &msgs(&[("user", "  hi  ")]), &inputs()).unwrap();
        assert_eq!(out, "  USER: hi\n");
    }

    #[test]
    fn raise_exception_is_an_error_naming_the_message() {
        let t = "{{ raise_exception('roles must alternate') }}";
        let e = render(t, &[], &inputs()).unwrap_err();
        assert!(e.0.contains("roles must alternate"), "{e}");
        assert!(!e.0.contains('\n'));
    }

    #[test]
    fn syntax_error_is_an_error() {
        let e = render("{% for %}", &[], &inputs()).unwrap_err();
        assert!(e.0.starts_with("chat template does not parse"), "{e}");
    }

    #[test]
    fn system_message_merges_when_the_template_drops_it() {
        // Only user/assistant turns are printed: the system text moves into the user's.
        let t = "{% for m in messages %}{% if m.role != 'system' %}[{{ m.role }}] {{ m.content }}\n{% endif %}{% endfor %}";
        let out = render(
            t,
            &msgs(&[("system", "Be brief."), ("user", "Hi")]),
            &inputs(),
        )
        .unwrap();
        assert_eq!(out, "[user] Be brief.\nHi\n");
        // A template that prints it keeps it.
        let t = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}";
        let out = render(
            t,
            &msgs(&[("developer", "Be brief."), ("user", "Hi")]),
            &inputs(),
        )
        .unwrap();
        assert_eq!(out, "[system] Be brief.\n[user] Hi\n");
    }

    #[test]
    fn strftime_now_uses_the_given_clock() {
        // 2024-07-26 12:00:00 UTC: the 26th in every zone from UTC-12 to UTC+11.
        let inp = Inputs {
            now: Some(1_721_995_200),
            ..inputs()
        };
        let out = render("{{ strftime_now('%d %b %Y') }}", &[], &inp).unwrap();
        assert_eq!(out, "26 Jul 2024");
    }
}
