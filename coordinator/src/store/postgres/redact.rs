//! Database URLs made safe to print.

/// `url` with any password replaced by `***`, safe to print: the one in the
/// user info (even one holding an unescaped `/` or `?`), and the `password`
/// and `sslpassword` query parameters libpq also accepts.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The last `@` ends the user info wherever it is, so a password holding
    // a `/` or `?` is still found.
    let (main, query) = match rest.rfind('@') {
        Some(at) => match rest[at..].find('?') {
            Some(q) => rest.split_at(at + q),
            None => (rest, ""),
        },
        None => match rest.find('?') {
            Some(q) => rest.split_at(q),
            None => (rest, ""),
        },
    };
    let main = match main.rfind('@') {
        Some(at) => {
            let (userinfo, host) = main.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***{host}"),
                None => main.to_string(),
            }
        }
        None => main.to_string(),
    };
    let query = query
        .split_inclusive(['?', '&'])
        .map(|part| {
            let (param, sep) = match part.strip_suffix(['?', '&']) {
                Some(p) => (p, &part[p.len()..]),
                None => (part, ""),
            };
            match param.split_once('=') {
                Some((name, _)) if name == "password" || name == "sslpassword" => {
                    format!("{name}=***{sep}")
                }
                _ => part.to_string(),
            }
        })
        .collect::<String>();
    format!("{scheme}://{main}{query}")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_survive_redaction() {
        let cases = [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgres://u:pa/ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u:pa?ss@h/db?x=1", "postgres://u:***@h/db?x=1"),
            (
                "postgres://u@h/db?sslmode=require&password=secret",
                "postgres://u@h/db?sslmode=require&password=***",
            ),
            (
                "postgres://h/db?sslpassword=secret&user=u",
                "postgres://h/db?sslpassword=***&user=u",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
        ];
        for (url, want) in cases {
            let got = redact_url(url);
            assert_eq!(got, want, "{url}");
            assert!(!got.contains("secret") && !got.contains("pa/ss"), "{got}");
        }
    }
}
