//! Matching one path component against a glob pattern: `*` (any run of
//! characters), `?` (one character) and `[abc]`, `[a-z]`, `[!abc]` (one
//! character of a set). Nothing else is special, and no pattern crosses a
//! `/`.

/// Whether `text` holds a glob character.
pub(super) fn is_pattern(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Whether `name` matches `pattern`, both one path component.
pub(super) fn matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point, the last `*`: linear in
    // practice and never exponential.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class(&pattern, p, name[n]) {
                        if matched {
                            p = next;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == '[' {
                        // An unclosed `[` is itself.
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((star_p, star_n)) => {
                p = star_p + 1;
                n = star_n + 1;
                star = Some((star_p, star_n + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The set at `pattern[start]` (a `[`): whether `c` is in it, and where
/// the pattern goes on after it; `None` when the `[` is never closed.
fn class(pattern: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negated = matches!(pattern.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    while i < pattern.len() {
        let here = pattern[i];
        if here == ']' && !first {
            return Some((found != negated, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&e| e != ']') {
            let end = pattern[i + 2];
            found |= here <= c && c <= end;
            i += 3;
        } else {
            found |= here == c;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_marks_and_sets() {
        assert!(matches("test-*.jsonl", "test-00001.jsonl"));
        assert!(matches("*", "anything"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("?.csv", "a.csv"));
        assert!(!matches("?.csv", "ab.csv"));
        assert!(matches("part-[0-9].tsv", "part-7.tsv"));
        assert!(!matches("part-[!0-9].tsv", "part-7.tsv"));
        assert!(matches("[ab]*", "b.json"));
        assert!(matches("x[", "x["), "an unclosed set is text");
        assert!(!matches("*.jsonl", "data.json"));
        assert!(matches("**", ""));
        assert!(is_pattern("data/*.jsonl") && !is_pattern("data/a.jsonl"));
    }
}
