//! Scopes: where a model may run (`prod/credit/scoring`), and the patterns
//! approvals, exceptions and nodes grant them with.
//!
//! Grammar (ABNF):
//!
//! ```text
//! scope    = segment *( "/" segment )            ; at most 256 bytes
//! segment  = 1*64( %x61-7A / DIGIT / "-" / "_" / "." )   ; not "." or ".."
//! pattern  = scope                               ; exactly that scope
//!          / scope "/*"                          ; every scope strictly below it
//!          / "*"                                 ; every scope
//! ```
//!
//! `prod/credit/*` matches `prod/credit/scoring` and `prod/credit/eu/scoring`
//! but not `prod/credit` itself nor `prod/credit-eu/x`: a pattern never
//! matches across a segment boundary. Lowercase only, so two spellings never
//! name one scope.

/// Longest scope, in bytes.
pub const SCOPE_BYTES_MAX: usize = 256;
const SEGMENT_BYTES_MAX: usize = 64;

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= SEGMENT_BYTES_MAX
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

/// Check a scope against the grammar.
pub fn validate_scope(scope: &str) -> Result<(), crate::GovernanceError> {
    scope_msg(scope).map_err(crate::GovernanceError::Scope)
}

/// Check a pattern (a scope, `PREFIX/*`, or `*`) against the grammar.
pub fn validate_pattern(pattern: &str) -> Result<(), crate::GovernanceError> {
    pattern_msg(pattern).map_err(crate::GovernanceError::Scope)
}

pub(crate) fn scope_msg(scope: &str) -> Result<(), String> {
    if scope.len() > SCOPE_BYTES_MAX {
        return Err(format!("scope is {} bytes; at most {SCOPE_BYTES_MAX}", scope.len()));
    }
    if scope.split('/').all(valid_segment) {
        Ok(())
    } else {
        Err(format!(
            "{scope:?} is not a scope: lowercase segments of [a-z0-9._-] separated by '/'"
        ))
    }
}

pub(crate) fn pattern_msg(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    scope_msg(pattern.strip_suffix("/*").unwrap_or(pattern))
        .map_err(|_| format!("{pattern:?} is not a scope pattern: a scope, a scope followed by /*, or *"))
}

/// Does `pattern` (already validated) grant `scope`?
pub fn pattern_matches(pattern: &str, scope: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix("/*") {
        Some(prefix) => {
            scope.len() > prefix.len() + 1 && scope.starts_with(prefix) && scope.as_bytes()[prefix.len()] == b'/'
        }
        None => pattern == scope,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_and_matching() {
        for ok in ["prod", "prod/credit/scoring", "a.b/c_d/e-f/0"] {
            validate_scope(ok).unwrap();
        }
        for bad in [
            "",
            "/",
            "prod/",
            "/prod",
            "prod//x",
            "Prod",
            "prod/../x",
            "prod/.",
            "pr od",
            "prod/*",
            "*",
            "é",
        ] {
            assert!(validate_scope(bad).is_err(), "{bad}");
        }
        for ok in ["*", "prod/*", "prod/credit", "prod/credit/*"] {
            validate_pattern(ok).unwrap();
        }
        for bad in ["prod*", "prod/*/x", "*/prod", "prod/**", "/*"] {
            assert!(validate_pattern(bad).is_err(), "{bad}");
        }
        assert!(pattern_matches("prod/credit/*", "prod/credit/scoring"));
        assert!(pattern_matches("prod/credit/*", "prod/credit/eu/scoring"));
        assert!(!pattern_matches("prod/credit/*", "prod/credit"));
        assert!(!pattern_matches("prod/credit/*", "prod/credit-eu/x"));
        assert!(pattern_matches("prod/credit", "prod/credit"));
        assert!(!pattern_matches("prod/credit", "prod/credit/x"));
        assert!(pattern_matches("*", "anything/at/all"));
    }
}
