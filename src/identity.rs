//! Who someone is, compared one way everywhere.
//!
//! Identities reach sqlctl from several channels — the embedded store's local user (`$USER`,
//! `--as`), the AWS caller's STS name, an SQS sender's role session, the console's verified
//! header (an OIDC subject or e-mail), a policy's approver lists and a spec's
//! `approval.approvers` — and each spells a person its own way. Comparing the raw strings lets
//! `rita` request and `Rita` (or `rita\u{200b}`, or fullwidth `ｒｉｔａ`) approve her own request
//! under four-eyes, and keeps `Alice` out of an allow-list that names `alice`.
//!
//! # The rule
//!
//! Two identities are the same person when their [`normalize`]d forms are equal:
//!
//! 1. default-ignorable code points are removed (Unicode's `Default_Ignorable_Code_Point`:
//!    zero-width space and (non-)joiners, word joiner, soft hyphen, BOM, variation selectors,
//!    bidi marks, embeddings, overrides and isolates, Hangul fillers, tag characters…);
//! 2. the rest is normalised to NFKC (fullwidth and other compatibility forms become their
//!    plain letters: `ｒｉｔａ` → `rita`, `ﬁ` → `fi`);
//! 3. it is case-folded with Unicode's full case folding (`ß` → `ss`, final `ς` → `σ`, Cherokee
//!    to its capitals, `ͅ` → `ι`), built from per-character lowercasing plus the folding entries
//!    that differ from it, then normalised to NFKC again (NFKC_Casefold's closure);
//! 4. surrounding white space is trimmed.
//!
//! An identity that normalises to nothing names nobody: it matches no allow-list entry and can
//! decide nothing. Only comparisons use the normalised form: what is stored and shown (a
//! decision's `by`, the requester annotation) stays as the channel reported it.

use std::borrow::Cow;

use icu_normalizer::{ComposingNormalizerBorrowed, DecomposingNormalizerBorrowed};
use icu_properties::CodePointSetData;
use icu_properties::props::DefaultIgnorableCodePoint;

/// The comparison form of an identity (see the module docs). Idempotent.
pub fn normalize(identity: &str) -> String {
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let nfd = DecomposingNormalizerBorrowed::new_nfd();
    let strip = |s: &str| -> String { s.chars().filter(|c| !ignorable.contains(*c)).collect() };

    let s = strip(identity.trim());
    let s = nfkc.normalize(&s);
    let mut folded = String::with_capacity(s.len());
    for c in s.chars() {
        fold_char(c, &mut folded);
    }
    // Folding can leave characters that decompose to foldable ones (U+1F80 ᾀ = ἀ + U+0345):
    // decompose, fold what appeared, and recompose.
    let decomposed = nfd.normalize(&folded);
    let mut refolded = String::with_capacity(decomposed.len());
    for c in decomposed.chars() {
        fold_char(c, &mut refolded);
    }
    let out = strip(&nfkc.normalize(&refolded));
    match out.trim() {
        t if t.len() == out.len() => out,
        t => t.to_string(),
    }
}

/// Whether `a` and `b` name the same person. An identity that normalises to nothing is nobody
/// and equals no one.
pub fn same(a: &str, b: &str) -> bool {
    let a = normalize(a);
    !a.is_empty() && a == normalize(b)
}

/// The short name of a principal: an AWS ARN's last path segment (`arn:aws:iam::1:user/alice`
/// → `alice`, `arn:aws:sts::1:assumed-role/sqlctl-approver/alice` → `alice`, the role session
/// name); anything else is itself. Without an `identities` map this is who a principal is, so
/// the requester `…:assumed-role/sqlctl-requester/alice` and the approver
/// `…:assumed-role/sqlctl-approver/alice` are one person for four-eyes.
pub fn short_name(principal: &str) -> String {
    let p = principal.trim();
    if !p.starts_with("arn:") {
        return p.to_string();
    }
    let resource = p.splitn(6, ':').nth(5).unwrap_or(p);
    resource.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(resource).to_string()
}

/// The user `principal` is under a policy's `identities` map (user → principals): the user
/// whose name or one of whose principals is the same identity. With an empty map every identity
/// is its own user, by its [`short_name`]. `None`: the map does not know it — an ARN is then
/// never taken by its session name alone, which whoever assumes a role may choose.
pub fn resolve(identities: &std::collections::BTreeMap<String, Vec<String>>, principal: &str) -> Option<String> {
    if identities.is_empty() {
        return Some(short_name(principal));
    }
    let p = normalize(principal);
    if p.is_empty() {
        return None;
    }
    identities
        .iter()
        .find(|(user, principals)| normalize(user) == p || principals.iter().any(|x| normalize(x) == p))
        .map(|(user, _)| user.clone())
}

/// Whether `who` is among `list` under the rule.
pub fn listed<'a>(list: impl IntoIterator<Item = &'a String>, who: &str) -> bool {
    let who = normalize(who);
    !who.is_empty() && list.into_iter().any(|entry| normalize(entry) == who)
}

/// The comparison form, borrowed when it is already normal (plain lowercase ASCII, the usual
/// case).
pub fn key(identity: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"@._-+:/=,".contains(&b);
    if !identity.is_empty() && identity.bytes().all(plain) {
        Cow::Borrowed(identity)
    } else {
        Cow::Owned(normalize(identity))
    }
}

/// Unicode full case folding of one character (CaseFolding.txt statuses C and F), written as
/// `char::to_lowercase` plus the entries where folding differs from lowercasing. Characters
/// whose folding NFKC already performs (`ſ`, `µ`, `ϐ`, `ﬀ`, `ŉ`…) are left to NFKC.
fn fold_char(c: char, out: &mut String) {
    match c {
        'ß' | 'ẞ' => out.push_str("ss"),
        'ς' => out.push('σ'),
        '\u{0345}' => out.push('ι'),
        // Cherokee folds to its capitals (U+13A0…), the opposite of lowercasing.
        '\u{13A0}'..='\u{13F5}' => out.push(c),
        '\u{13F8}'..='\u{13FD}' => out.push(char::from_u32(c as u32 - 8).unwrap_or(c)),
        '\u{AB70}'..='\u{ABBF}' => out.push(char::from_u32(c as u32 - 0xAB70 + 0x13A0).unwrap_or(c)),
        // Old Cyrillic letter forms.
        '\u{1C80}' => out.push('в'),
        '\u{1C81}' => out.push('д'),
        '\u{1C82}' => out.push('о'),
        '\u{1C83}' => out.push('с'),
        '\u{1C84}' | '\u{1C85}' => out.push('т'),
        '\u{1C86}' => out.push('ъ'),
        '\u{1C87}' => out.push('ѣ'),
        '\u{1C88}' => out.push('\u{A64B}'),
        '\u{1E9B}' => out.push('\u{1E61}'),
        // Per-character, so a word-final capital sigma folds like any other (to σ, not ς).
        _ => out.extend(c.to_lowercase()),
    }
}

/// The person running the command: `--as` or the OS user.
pub fn local_user(as_: Option<&str>) -> String {
    if let Some(a) = as_ {
        return a.to_string();
    }
    for var in ["SQLCTL_USER", "USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            return v;
        }
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; read before any other call.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned();
        }
    }
    format!("uid-{}", unsafe { libc::getuid() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusable_spellings_of_one_user_are_one_identity() {
        for spelling in [
            "rita",
            "Rita",
            "RITA",
            " rita ",
            "\trita\n",
            "rita\u{200b}",         // zero-width space
            "ri\u{200d}ta",         // zero-width joiner
            "r\u{200c}ita",         // zero-width non-joiner
            "\u{feff}rita",         // BOM
            "ri\u{00ad}ta",         // soft hyphen
            "rit\u{2060}a",         // word joiner
            "rita\u{fe0f}",         // variation selector
            "\u{200e}rita\u{200f}", // bidi marks
            "\u{202e}rita\u{202c}", // bidi override
            "\u{2066}rita\u{2069}", // bidi isolate
            "\u{061c}rita",         // Arabic letter mark
            "ｒｉｔａ",             // fullwidth
            "ＲＩＴＡ",
            "\u{3000}rita", // ideographic space
            "\u{00a0}Rita\u{00a0}",
            "rita\u{e0041}", // tag character
        ] {
            assert_eq!(normalize(spelling), "rita", "{spelling:?}");
            assert!(same(spelling, "rita"), "{spelling:?}");
            assert!(same("RiTa", spelling), "{spelling:?}");
        }
    }

    #[test]
    fn full_case_folding_not_just_lowercase() {
        assert!(same("STRASSE", "straße"));
        assert!(same("straẞe", "strasse"));
        assert!(same("ΣΟΦΟΣ", "σοφοσ"), "a final capital sigma folds to σ");
        assert!(same("σοφος", "σοφοσ"), "a final small sigma folds to σ");
        assert!(same("\u{1F88}", "\u{1F00}\u{03B9}"), "ᾈ folds to ἀι");
        assert!(same("\u{13A0}", "\u{AB70}"), "Cherokee");
        assert!(same("\u{212A}elvin", "kelvin"), "Kelvin sign");
        assert!(same("ﬁle", "file"), "ligature");
        assert!(same("ſam", "sam"), "long s");
        assert!(same("µ", "μ"), "micro sign");
        assert!(same("e\u{0301}", "é"), "canonical equivalents");
        assert!(same("e\u{200b}\u{0301}", "É"), "an ignorable between base and mark");
        assert!(same("İstanbul", "i\u{307}stanbul"));
    }

    #[test]
    fn different_people_stay_different() {
        assert!(!same("rita", "rit"));
        assert!(!same("rita", "r1ta"));
        assert!(!same("rita", "rita2"));
        assert!(!same("ri ta", "rita"), "inner spaces are kept");
        assert!(!same("rita", "ritа"), "Cyrillic а is another letter: confusable, not equal");
        assert!(!same("alice@example.com", "alice@example.org"));
    }

    #[test]
    fn an_identity_of_nothing_names_nobody() {
        for nothing in ["", "   ", "\u{200b}", "\u{feff}\u{200d}", "\u{3000}"] {
            assert_eq!(normalize(nothing), "", "{nothing:?}");
            assert!(!same(nothing, nothing), "{nothing:?}");
            assert!(!same(nothing, ""), "{nothing:?}");
            assert!(!listed(&[String::new(), "\u{200b}".into()], nothing), "{nothing:?}");
        }
    }

    #[test]
    fn normalize_is_idempotent_and_key_agrees() {
        for s in ["Rita", "ｒｉｔａ", "straße", "ΣΟΦΟΣ", "\u{1F88}", "alice@example.com", "AROA1:bob", "a\u{200b}b"]
        {
            let n = normalize(s);
            assert_eq!(normalize(&n), n, "{s:?}");
            assert_eq!(key(s), n, "{s:?}");
        }
        assert!(matches!(key("alice@example.com"), Cow::Borrowed(_)));
    }

    #[test]
    fn principals_have_short_names_and_the_map_takes_them_whole() {
        let approver = "arn:aws:sts::123456789012:assumed-role/sqlctl-approver/alice";
        let requester = "arn:aws:sts::123456789012:assumed-role/sqlctl-requester/alice";
        assert_eq!(short_name(approver), "alice");
        assert_eq!(short_name("arn:aws:iam::123456789012:user/ops/bob"), "bob");
        assert_eq!(short_name("arn:aws:iam::123456789012:root"), "root");
        assert_eq!(short_name("carol@example.com"), "carol@example.com");
        let none = std::collections::BTreeMap::new();
        assert_eq!(resolve(&none, approver), resolve(&none, requester), "one person without a map");
        let mut map = std::collections::BTreeMap::new();
        map.insert("alice".to_string(), vec![approver.to_string()]);
        assert_eq!(resolve(&map, approver).as_deref(), Some("alice"));
        assert_eq!(resolve(&map, &approver.to_uppercase()).as_deref(), Some("alice"));
        // Another role's session named alice is not alice: the session name is the assumer's choice.
        assert_eq!(resolve(&map, requester), None);
        assert_eq!(resolve(&map, "arn:aws:sts::123456789012:assumed-role/other/alice"), None);
        assert_eq!(resolve(&map, "alice").as_deref(), Some("alice"), "a plain name is its user");
    }

    #[test]
    fn lists_match_under_the_rule() {
        let list = vec!["Alice".to_string(), " bob\u{200b}".to_string()];
        assert!(listed(&list, "alice"));
        assert!(listed(&list, "ＢＯＢ"));
        assert!(!listed(&list, "carol"));
    }
}
