//! "Did you mean …?" for a word that names nothing: the nearest candidate by edit distance, when it is near
//! enough to be a typo (BuildKit's errors for an unknown instruction, `--target` or mount key carry the same hint).

/// Edit distance over characters where swapping two neighbours counts as one edit (optimal string alignment):
/// `buidl` is one edit from `build`, as a typist would count it.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate nearest to `word` (case-insensitively), if it is at most two edits away (BuildKit's
/// `suggest.Search`: a distance under 3, "same as hcl", whatever the word's length, so `tmp` finds `tmpfs`), else
/// none. Ties go to the earlier candidate.
pub fn nearest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let word = word.to_ascii_lowercase();
    let limit = 2;
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = distance(&word, &c.to_ascii_lowercase());
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// BuildKit's suggest.Search, case-sensitive: the first candidate at the smallest plain edit distance below 3 from
/// `word` (no transpositions), or none when a candidate is `word` itself. What the UndefinedVar and
/// UndefinedArgInFrom checks suggest.
pub fn search<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == word {
            return None;
        }
        let d = levenshtein(word, c);
        if d < best.map_or(3, |(bd, _)| bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            row[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(row[j] + 1);
        }
        prev = row;
    }
    prev[b.len()]
}

/// `" (did you mean X?)"` for the nearest candidate, or nothing.
pub fn hint<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    nearest(word, candidates)
        .map(|c| format!(" (did you mean {c}?)"))
        .unwrap_or_default()
}

/// `did you mean X?` for the nearest candidate, else `valid: a, b, c`: for a word that must be one of a short list.
pub fn hint_or_list(word: &str, candidates: &[&str]) -> String {
    match nearest(word, candidates.iter().copied()) {
        Some(c) => format!("did you mean {c}?"),
        None => format!("valid: {}", candidates.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_finds_its_word_and_a_stranger_finds_nothing() {
        let keywords = ["FROM", "RUN", "ENTRYPOINT", "EXPOSE"];
        assert_eq!(nearest("FNTRYPOINT", keywords), Some("ENTRYPOINT"));
        assert_eq!(nearest("fnrtypoint", keywords), Some("ENTRYPOINT"));
        assert_eq!(nearest("RUNN", keywords), Some("RUN"));
        assert_eq!(nearest("COMPILE", keywords), None);
        assert_eq!(nearest("buidl", ["build", "test"]), Some("build"));
        assert_eq!(hint("tmpfss", ["bind", "tmpfs"]), " (did you mean tmpfs?)");
        assert_eq!(hint("zzz", ["bind"]), "");
        assert_eq!(hint("tmp", ["bind", "tmpfs"]), " (did you mean tmpfs?)");
        assert_eq!(
            hint_or_list("bnd", &["bind", "cache"]),
            "did you mean bind?"
        );
        assert_eq!(
            hint_or_list("zzz", &["bind", "cache"]),
            "valid: bind, cache"
        );
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("buidl", "build"), 2);
        assert_eq!(
            search("DIR_ASSET", ["DIR_BINARIES", "DIR_ASSETS", "DIR_CONFIG"]),
            Some("DIR_ASSETS")
        );
        assert_eq!(search("MYARCH", ["MY_ARCH", "MY_OS"]), Some("MY_ARCH"));
        assert_eq!(search("version", ["tag"]), None);
        assert_eq!(search("path", ["PATH"]), None);
        assert_eq!(search("foo", ["foo", "fob"]), None);
        assert_eq!(distance("buidl", "build"), 1);
    }
}
