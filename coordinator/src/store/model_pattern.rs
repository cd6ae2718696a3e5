//! A worker's model glob, matched the same way by both stores (each in its
//! own SQL pattern language) and by Rust code outside the database.

/// A worker's model glob: `*` matches any run of characters, `?` exactly
/// one, everything else itself (case sensitive). Each store turns it into
/// its own SQL pattern language, so both match the same names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelPattern(String);

impl ModelPattern {
    /// Rejects empty patterns (they would match nothing, surely a mistake).
    pub fn new(glob: &str) -> Result<Self, String> {
        let glob = glob.trim();
        if glob.is_empty() {
            return Err("an empty model pattern matches no model; use `*` for any".into());
        }
        Ok(ModelPattern(glob.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Postgres `LIKE` pattern (backslash escapes).
    pub(crate) fn like(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 4);
        for c in self.0.chars() {
            match c {
                '*' => out.push('%'),
                '?' => out.push('_'),
                '%' | '_' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        out
    }

    /// SQLite `GLOB` pattern: only `[` has to be made literal.
    pub(crate) fn sqlite_glob(&self) -> String {
        self.0.replace('[', "[[]")
    }

    /// The same match in Rust, for checks outside the database.
    pub fn matches(&self, name: &str) -> bool {
        fn go(p: &[char], n: &[char]) -> bool {
            match (p.first(), n.first()) {
                (None, None) => true,
                (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
                (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
                (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
                _ => false,
            }
        }
        let p: Vec<char> = self.0.chars().collect();
        let n: Vec<char> = name.chars().collect();
        go(&p, &n)
    }
}

#[cfg(test)]
mod tests {
    use super::ModelPattern;

    #[test]
    fn globs_match_whole_names() {
        let p = |g: &str| ModelPattern::new(g).unwrap();
        assert!(p("llama-*").matches("llama-3-8b"));
        assert!(p("*").matches(""));
        assert!(p("gpt-4o-?ini").matches("gpt-4o-mini"));
        assert!(!p("llama").matches("llama-3"));
        assert!(!p("Llama-*").matches("llama-3"));
        assert!(p("a_b%c").matches("a_b%c"));
        assert!(!p("a_b%c").matches("axb%c"));
        assert!(ModelPattern::new("  ").is_err());
    }

    #[test]
    fn sql_patterns_escape_their_own_wildcards() {
        let p = ModelPattern::new(r"a_b%c\d*?[x]").unwrap();
        assert_eq!(p.like(), r"a\_b\%c\\d%_[x]");
        assert_eq!(p.sqlite_glob(), r"a_b%c\d*?[[]x]");
    }
}
