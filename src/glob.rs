//! Glob patterns on endpoint ids: `*` matches any run of characters (`/` included) and `?`
//! exactly one character; everything else matches itself.

pub fn matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Greedy match with backtracking to the last `*`: linear for one star, and never
    // exponential however many stars the pattern has.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_cross_slashes_and_question_marks_take_one_character() {
        assert!(matches("groq/*", "groq/llama-3.1-8b"));
        assert!(matches("*llama*", "groq/llama-3.1-8b"));
        assert!(matches("*", ""));
        assert!(matches("g?oq/*", "groq/x"));
        assert!(matches("exact/id", "exact/id"));
        assert!(matches("a*b*c", "a-b-b-c"));
        assert!(matches("é?", "éü"));
        assert!(!matches("groq/*", "openai/gpt"));
        assert!(!matches("?", ""));
        assert!(!matches("a*b", "a-b-c"));
        assert!(!matches("exact", "exact/id"));
    }

    #[test]
    fn many_stars_stay_fast() {
        let text = "a".repeat(200);
        assert!(!matches(&format!("{}b", "*a".repeat(50)), &text));
    }
}
