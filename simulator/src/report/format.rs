//! Text and numbers as the report writes them: escaping, cutting, and
//! numbers with thousands separators, percentages and "n/a".

/// What a missing or non-finite number renders as.
pub(super) const NA: &str = "n/a";

/// `s` escaped for HTML/XML text and attribute values; characters XML does
/// not allow are replaced by U+FFFD.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `v` with `decimals` decimals, "n/a" when not finite, never "-0".
pub(super) fn fixed(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return NA.to_owned();
    }
    let s = format!("{v:.decimals$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_owned(),
        _ => s,
    }
}

/// Digits of a non-negative integer string with thousands separators.
fn group_digits(digits: &str) -> String {
    let n = digits.len();
    let mut out = String::with_capacity(n + n / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (n - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `v` with `decimals` decimals and thousands separators ("n/a" when not finite).
pub(super) fn grouped(v: f64, decimals: usize) -> String {
    let s = fixed(v, decimals);
    if s == NA {
        return s;
    }
    let (sign, unsigned) = match s.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", s.as_str()),
    };
    match unsigned.split_once('.') {
        Some((int, frac)) => format!("{sign}{}.{frac}", group_digits(int)),
        None => format!("{sign}{}", group_digits(unsigned)),
    }
}

/// Decimals that suit a table value of `v`'s size (fewer for larger values).
pub(super) fn decimals_by_size(v: f64) -> usize {
    match v.abs() {
        a if a >= 1000.0 => 0,
        a if a >= 100.0 => 1,
        a if a >= 1.0 || a == 0.0 => 2,
        _ => 4,
    }
}

/// `v` with thousands separators and decimals that suit its size.
pub(super) fn auto(v: f64) -> String {
    grouped(v, decimals_by_size(v))
}

/// An integer count with thousands separators.
pub(super) fn count(n: u64) -> String {
    group_digits(&n.to_string())
}

/// A fraction as a percentage with `decimals` decimals ("n/a" when not finite).
pub(super) fn pct(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{}%", grouped(v * 100.0, decimals))
    } else {
        NA.to_owned()
    }
}

/// A fraction as a signed percentage ("+12.3%").
pub(super) fn signed_pct(v: f64) -> String {
    let s = pct(v, 1);
    if v.is_finite() && v > 0.0 && !s.starts_with("0.0") {
        format!("+{s}")
    } else {
        s
    }
}

/// `v` with a sign and thousands separators ("+41.2", "-1,200", "0.0":
/// zero has no sign, and there is never a "-0").
pub(crate) fn signed(v: f64, decimals: usize) -> String {
    let s = grouped(v, decimals);
    if s == NA || s.starts_with('-') || s.chars().all(|c| c == '0' || c == '.') {
        s
    } else {
        format!("+{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_readably() {
        assert_eq!(grouped(1_234_567.891, 1), "1,234,567.9");
        assert_eq!(grouped(-1234.0, 0), "-1,234");
        assert_eq!(fixed(-0.0001, 2), "0.00");
        assert_eq!(fixed(f64::NAN, 2), NA);
        assert_eq!(pct(0.1234, 1), "12.3%");
        assert_eq!(signed_pct(0.25), "+25.0%");
        assert_eq!(signed_pct(-0.05), "-5.0%");
        assert_eq!(count(1000), "1,000");
        assert_eq!(auto(3264.0), "3,264");
        assert_eq!(auto(576.04), "576.0");
        assert_eq!(auto(0.04321), "0.0432");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(signed(41.25, 1), "+41.2");
        assert_eq!(signed(-0.01, 1), "0.0");
        assert_eq!(signed(-1234.0, 0), "-1,234");
        assert_eq!(signed(f64::NAN, 0), NA);
    }
}
