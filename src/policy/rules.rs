//! A marketer's rule as a policy: the offer a loyalty team sends today,
//! written in a small rules file, so that "our rule against
//! personalization" is one comparison, and the rule can be served live.
//!
//! ```text
//! # first match wins
//! if hour >= 14 then bogo_afternoon
//! if lifecycle in (lapsing, inactive) then winback_20pct
//! if tier = gold and hour < 11 then triple_points_gold
//! otherwise double_points
//! ```
//!
//! A line is `if <condition> [and <condition>]... then <offer>`, or
//! `otherwise <offer>` (at most once, last). A condition compares a context
//! feature with a literal: `=`, `!=`, `<`, `<=`, `>`, `>=` with a number,
//! `=`/`!=` with a word, a quoted text or `true`/`false`, or `in (a, b, ...)`.
//! A condition on a feature the visit does not have, or has with another
//! type (a word where a number is compared), does not hold. `#` starts a
//! comment.
//!
//! The rule is deterministic: it sends the offer of the first line that holds
//! and whose offer can be sent (not paused, capped or out of budget), else
//! the `otherwise` offer, else the campaign's first sendable offer. Its
//! propensity is 1 for that offer and 0 for every other, which is why logs
//! of a rule alone cannot evaluate another policy where the two differ.

use std::fmt;

use crate::context::{Context, FeatureValue};

use super::{Features, Outcome, Policy, PolicyError};

/// A comparison of a number.
#[derive(Debug, Clone, Copy, PartialEq)]
enum NumberOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One condition on one context feature.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    /// The feature is a number and compares so with the literal.
    Number(NumberOp, f64),
    /// The feature is a category (or a flag, by `true`/`false`) equal to
    /// one of the values (`negated`: equal to none of them).
    OneOf { values: Vec<String>, negated: bool },
}

/// `feature <test>`.
#[derive(Debug, Clone, PartialEq)]
struct Condition {
    feature: String,
    test: Test,
}

impl Condition {
    fn holds(&self, context: &Context) -> bool {
        match (&self.test, context.get(&self.feature)) {
            (Test::Number(op, want), Some(FeatureValue::Number(x))) => match op {
                NumberOp::Eq => x == want,
                NumberOp::Ne => x != want,
                NumberOp::Lt => x < want,
                NumberOp::Le => x <= want,
                NumberOp::Gt => x > want,
                NumberOp::Ge => x >= want,
            },
            (Test::OneOf { values, negated }, Some(FeatureValue::Category(c))) => {
                values.iter().any(|v| v == c) != *negated
            }
            (Test::OneOf { values, negated }, Some(FeatureValue::Flag(b))) => {
                let b = if *b { "true" } else { "false" };
                values.iter().any(|v| v == b) != *negated
            }
            _ => false,
        }
    }
}

/// One line: all conditions hold (none: always), then this offer.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    number: usize,
    all: Vec<Condition>,
    offer: String,
}

/// A parsed rules file, not yet bound to a campaign's offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    lines: Vec<Line>,
}

/// Why a rules file was refused: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rules line {line}: {message}")]
pub struct RulesError {
    /// 1-based line number in the file (0: the file as a whole).
    pub line: usize,
    /// What is wrong, in words.
    pub message: String,
}

fn refuse(line: usize, message: impl fmt::Display) -> RulesError {
    RulesError {
        line,
        message: message.to_string(),
    }
}

/// Splits a line into words, symbols and quoted texts.
fn tokens(text: &str, line: usize) -> Result<Vec<Token>, RulesError> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, ch)) => s.push(ch),
                    None => return Err(refuse(line, "a quoted text is not closed")),
                }
            }
            out.push(Token::Quoted(s));
        } else if "(),".contains(c) {
            chars.next();
            out.push(Token::Symbol(c.to_string()));
        } else if "=!<>".contains(c) {
            chars.next();
            let mut op = c.to_string();
            if let Some(&(_, '=')) = chars.peek() {
                chars.next();
                op.push('=');
            }
            out.push(Token::Symbol(op));
        } else {
            let mut end = start;
            while let Some(&(i, ch)) = chars.peek() {
                if ch.is_whitespace() || "(),=!<>\"".contains(ch) {
                    break;
                }
                end = i + ch.len_utf8();
                chars.next();
            }
            out.push(Token::Word(text[start..end].to_string()));
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Symbol(String),
}

impl Token {
    fn is_word(&self, w: &str) -> bool {
        matches!(self, Token::Word(x) if x.eq_ignore_ascii_case(w))
    }
    fn is_symbol(&self, s: &str) -> bool {
        matches!(self, Token::Symbol(x) if x == s)
    }
}

/// A word or quoted text: an offer id, a feature name or a category.
fn name(token: Option<&Token>, what: &str, line: usize) -> Result<String, RulesError> {
    match token {
        Some(Token::Word(w) | Token::Quoted(w)) if !w.is_empty() => Ok(w.clone()),
        Some(other) => Err(refuse(line, format!("expected {what}, found {other:?}"))),
        None => Err(refuse(
            line,
            format!("expected {what} at the end of the line"),
        )),
    }
}

/// Parses `feature op literal` or `feature in (a, b)` from `t`, returning
/// the condition and the tokens it used.
fn condition(t: &[Token], line: usize) -> Result<(Condition, usize), RulesError> {
    let feature = name(t.first(), "a feature name", line)?;
    let Some(op) = t.get(1) else {
        return Err(refuse(line, format!("'{feature}' needs a comparison")));
    };
    if op.is_word("in") {
        if !t.get(2).is_some_and(|x| x.is_symbol("(")) {
            return Err(refuse(line, "'in' needs a list: in (a, b)"));
        }
        let mut values = Vec::new();
        let mut i = 3;
        loop {
            values.push(name(t.get(i), "a value", line)?);
            match t.get(i + 1) {
                Some(x) if x.is_symbol(",") => i += 2,
                Some(x) if x.is_symbol(")") => {
                    let test = Test::OneOf {
                        values,
                        negated: false,
                    };
                    return Ok((Condition { feature, test }, i + 2));
                }
                _ => return Err(refuse(line, "the list after 'in' is not closed by ')'")),
            }
        }
    }
    let Token::Symbol(op) = op else {
        return Err(refuse(
            line,
            format!("expected a comparison after '{feature}'"),
        ));
    };
    let op = match op.as_str() {
        "=" | "==" => NumberOp::Eq,
        "!=" => NumberOp::Ne,
        "<" => NumberOp::Lt,
        "<=" => NumberOp::Le,
        ">" => NumberOp::Gt,
        ">=" => NumberOp::Ge,
        other => return Err(refuse(line, format!("unknown comparison '{other}'"))),
    };
    let test = match t.get(2) {
        Some(Token::Word(w)) if w.parse::<f64>().is_ok_and(f64::is_finite) => {
            Test::Number(op, w.parse::<f64>().unwrap_or_default())
        }
        Some(Token::Word(w) | Token::Quoted(w)) => match op {
            NumberOp::Eq | NumberOp::Ne => Test::OneOf {
                values: vec![w.clone()],
                negated: op == NumberOp::Ne,
            },
            _ => {
                return Err(refuse(
                    line,
                    format!("'{feature}' is compared by order with '{w}', which is not a number"),
                ));
            }
        },
        _ => {
            return Err(refuse(
                line,
                format!("'{feature}' is compared with nothing"),
            ));
        }
    };
    Ok((Condition { feature, test }, 3))
}

fn parse_line(t: &[Token], number: usize) -> Result<Line, RulesError> {
    if t[0].is_word("otherwise") {
        let offer = name(t.get(1), "an offer after 'otherwise'", number)?;
        if t.len() > 2 {
            return Err(refuse(number, "'otherwise' takes one offer"));
        }
        return Ok(Line {
            number,
            all: Vec::new(),
            offer,
        });
    }
    if !t[0].is_word("if") {
        return Err(refuse(number, "a rule starts with 'if' or 'otherwise'"));
    }
    let mut all = Vec::new();
    let mut i = 1;
    loop {
        let (c, used) = condition(&t[i..], number)?;
        all.push(c);
        i += used;
        match t.get(i) {
            Some(x) if x.is_word("and") => i += 1,
            Some(x) if x.is_word("then") => break,
            Some(other) => {
                return Err(refuse(
                    number,
                    format!("expected 'and' or 'then', found {other:?}"),
                ));
            }
            None => return Err(refuse(number, "the rule has no 'then <offer>'")),
        }
    }
    let offer = name(t.get(i + 1), "an offer after 'then'", number)?;
    if t.len() > i + 2 {
        return Err(refuse(number, "one offer after 'then'"));
    }
    Ok(Line { number, all, offer })
}

impl Rules {
    /// Parses a rules file.
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let number = i + 1;
            let code = match raw.find('#') {
                // A '#' inside a quoted text is text, not a comment.
                Some(at) if raw[..at].matches('"').count() % 2 == 0 => &raw[..at],
                _ => raw,
            };
            let t = tokens(code, number)?;
            if t.is_empty() {
                continue;
            }
            if lines.last().is_some_and(|l: &Line| l.all.is_empty()) {
                return Err(refuse(number, "nothing may follow 'otherwise'"));
            }
            lines.push(parse_line(&t, number)?);
        }
        if lines.is_empty() {
            return Err(refuse(0, "the file has no rules"));
        }
        Ok(Rules { lines })
    }

    /// The offers the rules name, in order of first mention.
    pub fn offers(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for l in &self.lines {
            if !out.contains(&l.offer.as_str()) {
                out.push(&l.offer);
            }
        }
        out
    }

    /// Binds the rules to a campaign's offers (`offer_ids`, in campaign
    /// order); refuses a rule naming an offer the campaign does not have.
    pub fn bind(&self, offer_ids: &[&str]) -> Result<RulePolicy, RulesError> {
        let mut lines = Vec::with_capacity(self.lines.len());
        for l in &self.lines {
            let Some(offer) = offer_ids.iter().position(|o| *o == l.offer) else {
                return Err(refuse(
                    l.number,
                    format!(
                        "no offer '{}' in the campaign (offers: {})",
                        l.offer,
                        offer_ids.join(", ")
                    ),
                ));
            };
            lines.push((l.all.clone(), offer));
        }
        Ok(RulePolicy {
            lines,
            offers: offer_ids.len(),
        })
    }
}

/// [`Rules`] bound to a campaign's offers: a deterministic [`Policy`] that
/// does not learn.
#[derive(Debug, Clone)]
pub struct RulePolicy {
    /// (conditions, offer index), in file order.
    lines: Vec<(Vec<Condition>, usize)>,
    offers: usize,
}

impl RulePolicy {
    /// The first offer in the rule's preference order that is a candidate
    /// (`candidates` is never empty).
    fn pick(features: &Features, candidates: &[usize]) -> usize {
        features
            .x
            .iter()
            .map(|&(o, _)| o as usize)
            .find(|o| candidates.contains(o))
            .unwrap_or(candidates[0])
    }
}

impl Policy for RulePolicy {
    /// The rule's order of preference for this visit, as (offer, rank)
    /// pairs: the offers of the lines that hold, in file order, each once.
    fn features(&self, context: &Context) -> Result<Features, PolicyError> {
        let mut x: Vec<(u32, f64)> = Vec::new();
        for (all, offer) in &self.lines {
            let o = *offer as u32;
            if all.iter().all(|c| c.holds(context)) && !x.iter().any(|&(p, _)| p == o) {
                x.push((o, x.len() as f64));
            }
        }
        debug_assert!(x.iter().all(|&(o, _)| (o as usize) < self.offers));
        Ok(Features {
            segment: String::new(),
            x,
            ..Features::default()
        })
    }
    fn choose(&self, f: &Features, candidates: &[usize], _: &mut dyn rand::Rng) -> usize {
        Self::pick(f, candidates)
    }
    fn propensity(&self, f: &Features, candidates: &[usize], offer: usize) -> f64 {
        f64::from(u8::from(Self::pick(f, candidates) == offer))
    }
    fn on_decision(&mut self, _: &Features, _: usize) {}
    fn on_outcome(&mut self, _: &Features, _: usize, _: Outcome) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const COFFEE: &str = r#"
# our rule today: first match wins
if hour >= 14 then bogo_afternoon
if lifecycle in (lapsing, inactive) then winback_20pct   # drifting away
if tier = "gold" and hour < 11 then triple_points_gold
otherwise double_points
"#;
    const OFFERS: [&str; 4] = [
        "double_points",
        "bogo_afternoon",
        "winback_20pct",
        "triple_points_gold",
    ];

    fn visit(hour: f64, lifecycle: &str, tier: &str) -> Context {
        let mut c = Context::new();
        c.insert("hour".into(), FeatureValue::Number(hour));
        c.insert("lifecycle".into(), FeatureValue::Category(lifecycle.into()));
        c.insert("tier".into(), FeatureValue::Category(tier.into()));
        c
    }

    fn choice(p: &RulePolicy, c: &Context, candidates: &[usize]) -> &'static str {
        let f = p.features(c).expect("features");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        OFFERS[p.choose(&f, candidates, &mut rng)]
    }

    #[test]
    fn first_line_that_holds_wins() {
        let p = Rules::parse(COFFEE)
            .and_then(|r| r.bind(&OFFERS))
            .expect("rules");
        let all = [0, 1, 2, 3];
        assert_eq!(
            choice(&p, &visit(15.0, "lapsing", "gold"), &all),
            "bogo_afternoon"
        );
        assert_eq!(
            choice(&p, &visit(9.0, "lapsing", "gold"), &all),
            "winback_20pct"
        );
        assert_eq!(
            choice(&p, &visit(9.0, "active", "gold"), &all),
            "triple_points_gold"
        );
        assert_eq!(
            choice(&p, &visit(12.0, "active", "gold"), &all),
            "double_points"
        );
        assert_eq!(
            choice(&p, &visit(9.0, "active", "silver"), &all),
            "double_points"
        );
    }

    #[test]
    fn an_unsendable_offer_falls_to_the_next_line_that_holds() {
        let p = Rules::parse(COFFEE)
            .and_then(|r| r.bind(&OFFERS))
            .expect("rules");
        // bogo paused: the afternoon lapsing visitor gets the win-back.
        let c = visit(15.0, "lapsing", "gold");
        assert_eq!(choice(&p, &c, &[0, 2, 3]), "winback_20pct");
        // Nothing that holds is sendable, nor 'otherwise': the first candidate.
        assert_eq!(
            choice(&p, &visit(15.0, "active", "x"), &[2, 3]),
            "winback_20pct"
        );
        let f = p.features(&c).expect("features");
        assert_eq!(p.propensity(&f, &[0, 2, 3], 2), 1.0);
        assert_eq!(p.propensity(&f, &[0, 2, 3], 0), 0.0);
        assert_eq!(p.propensity(&f, &[0, 1, 2, 3], 1), 1.0);
    }

    #[test]
    fn missing_or_mistyped_features_do_not_hold() {
        let p = Rules::parse("if hour >= 14 then bogo_afternoon\nif flag = true then winback_20pct\notherwise double_points")
            .and_then(|r| r.bind(&OFFERS))
            .expect("rules");
        let mut c = Context::new();
        c.insert("hour".into(), FeatureValue::Category("15".into()));
        assert_eq!(choice(&p, &c, &[0, 1, 2]), "double_points");
        c.insert("flag".into(), FeatureValue::Flag(true));
        assert_eq!(choice(&p, &c, &[0, 1, 2]), "winback_20pct");
        c.insert("flag".into(), FeatureValue::Flag(false));
        assert_eq!(choice(&p, &c, &[0, 1, 2]), "double_points");
    }

    #[test]
    fn every_comparison() {
        let cases = [
            ("x = 3", 3.0, true),
            ("x == 3", 2.0, false),
            ("x != 3", 2.0, true),
            ("x < 3", 3.0, false),
            ("x <= 3", 3.0, true),
            ("x > 3", 3.5, true),
            ("x >= 3", 2.5, false),
            ("x >= -1.5", -1.5, true),
        ];
        for (cond, x, want) in cases {
            let p = Rules::parse(&format!("if {cond} then a\notherwise b"))
                .and_then(|r| r.bind(&["a", "b"]))
                .expect(cond);
            let mut c = Context::new();
            c.insert("x".into(), FeatureValue::Number(x));
            let f = p.features(&c).expect("features");
            assert_eq!(p.propensity(&f, &[0, 1], 0) == 1.0, want, "{cond} at {x}");
        }
        let p = Rules::parse("if tier != gold then a\notherwise b")
            .and_then(|r| r.bind(&["a", "b"]))
            .expect("rules");
        let f = p.features(&visit(1.0, "a", "silver")).expect("features");
        assert_eq!(p.propensity(&f, &[0, 1], 0), 1.0);
        let f = p.features(&visit(1.0, "a", "gold")).expect("features");
        assert_eq!(p.propensity(&f, &[0, 1], 1), 1.0);
    }

    #[test]
    fn bad_files_name_the_line_and_the_problem() {
        let cases = [
            ("", 0, "no rules"),
            ("when hour > 3 then a", 1, "starts with 'if'"),
            ("if hour > 3 a", 1, "expected 'and' or 'then'"),
            ("if hour > 3", 1, "no 'then"),
            ("if hour > three then a", 1, "not a number"),
            ("if hour in (1, 2 then a", 1, "not closed"),
            ("if hour ~ 3 then a", 1, "expected a comparison"),
            ("otherwise a\nif x = 1 then b", 2, "follow 'otherwise'"),
            ("otherwise a b", 1, "one offer"),
            ("# c\nif x = \"open then a", 2, "not closed"),
            ("if x = 1 then nope", 1, "no offer 'nope'"),
        ];
        for (text, line, words) in cases {
            let err = Rules::parse(text)
                .and_then(|r| r.bind(&["a", "b"]).map(|_| r))
                .expect_err(text);
            assert_eq!(err.line, line, "{text}: {err}");
            assert!(err.message.contains(words), "{text}: {err}");
        }
    }

    #[test]
    fn offers_are_listed_once_in_order() {
        let r = Rules::parse(COFFEE).expect("rules");
        assert_eq!(
            r.offers(),
            [
                "bogo_afternoon",
                "winback_20pct",
                "triple_points_gold",
                "double_points"
            ]
        );
    }
}
